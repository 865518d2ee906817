"""runner.check_credentials: the ids and capabilities read back from the kernel after they were set."""

from __future__ import annotations

import os

import pytest

from pysbx.sandbox.process import User


def test_credentials_other_than_the_ones_set_stop_the_command() -> None:
    """check_credentials reads the ids and capabilities back from the kernel: here, this
    test process is not the user and capabilities a spec asks for, as a process whose
    setresuid and capset a filter had faked would not be."""
    from types import SimpleNamespace

    from pysbx.sandbox.idmap import IdMaps, IdRange
    from pysbx.sandbox.runner import check_credentials

    maps = IdMaps((IdRange(0, 165536, 65536),), (IdRange(0, 165536, 65536),), False)
    other = 4242 if os.geteuid() != 4242 else 4243
    spec = SimpleNamespace(user=User(other, other, (), "/"), capabilities=0, id_maps=maps)
    with pytest.raises(OSError, match="credentials are not the ones set"):
        check_credentials(spec)  # type: ignore[arg-type]
    from pysbx.sandbox.linux import capget

    euid, egid = os.geteuid(), os.getegid()
    effective, permitted, inheritable = capget()
    ours = SimpleNamespace(user=User(euid, egid, tuple(os.getgroups()), "/"), capabilities=effective, id_maps=maps)
    as_it_is = os.getresuid() == (euid,) * 3 and os.getresgid() == (egid,) * 3 and euid == 0
    if as_it_is and permitted == effective and inheritable == 0:
        check_credentials(ours)  # type: ignore[arg-type]  # the process as it is: passes
