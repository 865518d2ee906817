"""Capability sets as the policy says: the bounding set is cut to what is granted, and a
container root keeps exactly the granted capabilities (Docker's semantics); inheritable
and ambient stay empty, so an exec'd program of another user gains nothing."""

from __future__ import annotations

from pysbx.policies.capnames import CAPABILITY_ORDER
from pysbx.sandbox import linux

CAPABILITY_NUMBERS = {name: number for number, name in enumerate(CAPABILITY_ORDER)}


_last_capability: int | None = None


def last_capability() -> int:
    """The kernel's highest capability number, read once per process: `exec` reads it on the
    host, before joining a container whose /proc a container root may have mounted over."""
    global _last_capability
    if _last_capability is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as last:
                _last_capability = int(last.read())
        except OSError:
            _last_capability = max(CAPABILITY_NUMBERS.values())
    return _last_capability


def mask(names: frozenset[str] | set[str]) -> int:
    return sum(1 << CAPABILITY_NUMBERS[name] for name in names if name in CAPABILITY_NUMBERS)


def names(capabilities: int) -> frozenset[str]:
    """The names of the capabilities in a mask (mask's inverse)."""
    return frozenset(name for name, number in CAPABILITY_NUMBERS.items() if capabilities >> number & 1)


def drop_bounding_capabilities(keep: int) -> None:
    """Must run while we still hold CAP_SETPCAP, i.e. before switching to the container user."""
    for number in range(last_capability() + 1):
        if not keep & (1 << number):
            linux.prctl(linux.PR_CAPBSET_DROP, number)


def capabilities_after_setuid(keep: int, uid: int) -> int:
    """Root keeps the granted set; any other user has none (as in Docker)."""
    return keep if uid == 0 else 0


def set_process_capabilities(keep: int, uid: int) -> None:
    """After setuid: capabilities_after_setuid, with nothing inheritable or ambient."""
    granted = capabilities_after_setuid(keep, uid)
    linux.capset(effective=granted, permitted=granted, inheritable=0)
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
