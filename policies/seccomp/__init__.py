"""Seccomp profiles in the Docker/OCI JSON format: read, check, resolve, override, compare,
compile. A package of one module per concern:

    profile   the model (Profile, SyscallRule, ArgCondition, ...), the vocabulary, the error
    reader    JSON -> checked Profile, every problem at its JSON location
    resolve   includes/excludes for one machine (Docker's rules), policy overrides, OCI export
    compare   what one profile lets through further than another (`policy diff`)
    compile   BPF with libseccomp, as runc builds it: the only module importing the binding

One profile file serves three consumers. `pysandbox run` compiles it to a BPF program on
the cold path and caches the bytes in the plan (the warm path only loads them, see
sandbox/seccomp.py); `policy export` writes it back for Docker unchanged, and resolved for
OCI runtimes, which know no includes/excludes. The built-in profiles (default.json,
strict.json) lie in this folder. The names below are the package's interface."""

from __future__ import annotations

from pysbx.policies.seccomp.compare import ProfileDifference, compare_profiles
from pysbx.policies.seccomp.compile import (
    Compiled,
    compile_bpf,
    compile_pfc,
    libseccomp_version,
    syscall_known,
    syscall_number,
)
from pysbx.policies.seccomp.profile import (
    ACTIONS,
    ARCHITECTURES,
    BUILTIN_PROFILES,
    FILTER_FLAGS,
    GO_TO_SCMP_ARCH,
    MAX_ARGS,
    MAX_ERRNO,
    MAX_PROFILE_BYTES,
    OPERATORS,
    PROFILE_DIR,
    ArchMapEntry,
    ArgCondition,
    Filter,
    KernelVersion,
    Profile,
    SeccompProfileError,
    SyscallRule,
)
from pysbx.policies.seccomp.reader import load_profile, parse_profile
from pysbx.policies.seccomp.resolve import (
    go_arch,
    kernel_version,
    oci_document,
    resolve,
    resolve_architectures,
    with_overrides,
)

__all__ = [
    "ACTIONS",
    "ARCHITECTURES",
    "BUILTIN_PROFILES",
    "FILTER_FLAGS",
    "GO_TO_SCMP_ARCH",
    "MAX_ARGS",
    "MAX_ERRNO",
    "MAX_PROFILE_BYTES",
    "OPERATORS",
    "PROFILE_DIR",
    "ArchMapEntry",
    "ArgCondition",
    "Compiled",
    "Filter",
    "KernelVersion",
    "Profile",
    "ProfileDifference",
    "SeccompProfileError",
    "SyscallRule",
    "compare_profiles",
    "compile_bpf",
    "compile_pfc",
    "go_arch",
    "kernel_version",
    "libseccomp_version",
    "load_profile",
    "oci_document",
    "parse_profile",
    "resolve",
    "resolve_architectures",
    "syscall_known",
    "syscall_number",
    "with_overrides",
]
