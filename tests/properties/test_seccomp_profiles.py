"""Property: any bytes given as a seccomp profile parse into a Profile or raise
SeccompProfileError, never another exception. A profile that parses survives a round trip
through its own JSON, resolves, and compiles with libseccomp or is refused with
SeccompProfileError (what the cold path of `pysandbox run` does with a user's file)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysbx.policies.seccomp import (
    ACTIONS,
    ARCHITECTURES,
    FILTER_FLAGS,
    GO_TO_SCMP_ARCH,
    OPERATORS,
    Profile,
    SeccompProfileError,
    compile_bpf,
    parse_profile,
    resolve,
)
from tests.properties.strategies import examples, json_bytes, json_values

FIELDS = ("defaultAction", "defaultErrnoRet", "defaultErrno", "architectures", "archMap", "flags", "syscalls",
          "listenerPath", "listenerMetadata", "comment", "names", "name", "action", "errnoRet", "errno", "args",
          "includes", "excludes", "index", "value", "valueTwo", "op", "caps", "arches", "minKernel",
          "architecture", "subArchitectures")  # fmt: skip
VALUES = (*ACTIONS, *OPERATORS, *sorted(ARCHITECTURES), *sorted(FILTER_FLAGS), *GO_TO_SCMP_ARCH, "x86", "x86_64",
          "read", "write", "ptrace", "nosuchcall", "Read", "CAP_SYS_ADMIN", "SYS_ADMIN", "EPERM", "ENOSYS", "EFOO",
          "4.8", "5", "99999999999.1", 0, 1, 5, 6, 4095, 4096, 2**64 - 1, 2**64, -1, 1.0, True)  # fmt: skip


def rules() -> st.SearchStrategy[object]:
    """A syscalls entry: mostly the right keys, values that are right or nearly."""
    value = json_values(FIELDS, VALUES)
    arg = st.fixed_dictionaries({}, optional={k: value for k in ("index", "value", "valueTwo", "op")})
    rule_fields = {k: value for k in ("comment", "name", "errnoRet", "errno", "includes", "excludes")}
    rule_fields["args"] = st.one_of(st.lists(arg, max_size=7), value)
    names = st.one_of(st.lists(st.sampled_from(VALUES[-30:-16]), max_size=3), value)
    return st.fixed_dictionaries({"names": names, "action": st.sampled_from((*ACTIONS, "ALLOW"))}, optional=rule_fields)


def profiles() -> st.SearchStrategy[bytes]:
    value = json_values(FIELDS, VALUES)
    optional = {key: value for key in FIELDS[1:6] + FIELDS[7:10]}
    optional["syscalls"] = st.one_of(st.lists(rules(), max_size=4), value)
    document = st.fixed_dictionaries({"defaultAction": st.sampled_from((*ACTIONS, "ALLOW"))}, optional=optional)
    return st.one_of(document.map(json_bytes), value.map(json_bytes), st.binary(max_size=40))


def load(data: bytes) -> Profile | None:
    try:
        profile = parse_profile(data, "profile.json")
    except SeccompProfileError as error:
        assert str(error).startswith("profile.json: "), error
        return None
    assert parse_profile(json.dumps(profile.to_json())) == profile, "the round trip changed the profile"
    return profile


@settings(max_examples=examples(300), deadline=None)
@given(profiles())
def test_any_bytes_parse_or_raise_seccomp_profile_error(data: bytes) -> None:
    profile = load(data)
    if profile is not None:
        resolve(profile, frozenset({"CAP_SYS_ADMIN"}), "amd64", "5.10")
        resolve(profile, frozenset(), "arm64", "4.4")


@settings(
    max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)
@given(profiles())
def test_a_profile_that_parses_compiles_or_raises_seccomp_profile_error(data: bytes) -> None:
    profile = load(data)
    if profile is not None:
        try:
            compile_bpf(profile, frozenset({"CAP_SYS_ADMIN"}), kernel_version="6.1")
        except SeccompProfileError as error:
            assert str(error)
