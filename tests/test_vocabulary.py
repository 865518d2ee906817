"""One source of truth for shared vocabulary. Where the warm start of `pysandbox run` keeps
a copy of its own (it must not import the policy model or the seccomp package), a test ties
the copy to the model: capability names, built-in policy names, seccomp filter flags."""

from __future__ import annotations

from pysbx.policies.loader import BUILTINS
from pysbx.policies.model import LINUX_CAPABILITIES
from pysbx.policies.seccomp import FILTER_FLAGS
from pysbx.sandbox.capabilities import CAPABILITY_NUMBERS
from pysbx.sandbox.seccomp import FILTER_FLAGS as LOADABLE_FLAGS
from pysbx.sandbox.warm import BUILTIN_POLICIES


def test_the_runtime_numbers_every_capability_the_policy_model_names() -> None:
    assert set(CAPABILITY_NUMBERS) == set(LINUX_CAPABILITIES)
    assert sorted(CAPABILITY_NUMBERS.values()) == list(range(len(CAPABILITY_NUMBERS)))  # 0..N, no gap


def test_the_warm_path_knows_the_same_built_in_policies_as_the_loader() -> None:
    assert BUILTIN_POLICIES == BUILTINS


def test_every_filter_flag_a_profile_may_name_can_be_loaded() -> None:
    assert set(LOADABLE_FLAGS) == set(FILTER_FLAGS)
