"""The kernel log records `run --explain` reads when it has no listener (sandbox.auditlog):
only a whole seccomp audit record counts, so a process that writes to the kernel log, or
names itself after audit fields, cannot forge one."""

from __future__ import annotations

from pysbx.sandbox.auditlog import RECORD

GENUINE = (
    b"6,1234,5678,-;audit: type=1326 audit(1796519946.992:64): auid=0 uid=100000 gid=100000 ses=7 "
    b'pid=31399 comm="denials" exe="/denials" sig=0 arch=c000003e syscall=272 compat=0 ip=0x43d159 code=0x50000'
)


def test_a_whole_record_is_read_field_by_field() -> None:
    match = RECORD.match(GENUINE)
    assert match is not None and match.groups() == (b"7", b"31399", b"c000003e", b"272", b"50000")
    labelled = GENUINE.replace(b" pid=", b" subj=container (enforce) pid=")  # an LSM label with spaces
    assert RECORD.match(labelled) is not None


def test_forged_records_do_not_count() -> None:
    forged = [
        b"4,99,100,-;printk from a driver: " + GENUINE.split(b";", 1)[1],  # not the message's start
        GENUINE + b" ses=1 syscall=1",  # trailing fields: the tail is anchored
        GENUINE.replace(b'comm="denials"', b"comm=x sig=0 arch=c000003e syscall=1 compat=0"),  # spaces in comm
        GENUINE.replace(b"type=1326", b"type=1300"),  # another kind of audit record
    ]
    for line in forged:
        assert RECORD.match(line) is None, line
