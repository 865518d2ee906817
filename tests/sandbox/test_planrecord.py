"""planrecord: the typed plan a warm start reads back from marshal, and refuses in another shape."""

from __future__ import annotations

import pytest


def test_a_plan_survives_marshal_and_a_plan_of_another_shape_is_refused() -> None:
    import marshal

    from pysbx.sandbox.idmap import IdMaps, IdRange
    from pysbx.sandbox.limits import Enforcement
    from pysbx.sandbox.mounts import TmpfsMount
    from pysbx.sandbox.planrecord import Confinement, ImageRun, Plan

    plan = Plan(
        lowers=["/cache/layers/a/root"],
        etc_texts=["root:x:0:0::/root:/bin/sh\n", "root:x:0:\n"],
        image=ImageRun(["/init"], None, ["A=1"], "/srv", "1000"),
        confinement=Confinement(
            namespaces=["user", "pid"],
            network="none",
            capabilities=0,
            no_new_privileges=True,
            read_only_rootfs=True,
            masked_paths=["/proc/kcore"],
            readonly_paths=["/proc/sys"],
            wall_time=None,
            user=None,
            user_where="strict.yaml:1",
            signing_required=True,
            lifecycle={
                "detach": True,
                "restart": ["no"],
                "exec": False,
                "log_max_size": 4096,
                "log_max_file": 1,
                "where": {"exec": "strict.yaml:90"},
            },
        ),
        id_maps=IdMaps((IdRange(0, 165536, 65536),), (IdRange(0, 165536, 65536),), False),
        limits=[Enforcement("pids", 256, "RLIMIT_NPROC")],
        tmpfs=[TmpfsMount("/tmp", 1 << 26, "1777")],
        bpf=None,
        evidence=[["p.yaml", "/p.yaml", [1, 2, 3, 4, 5]]],
        bundle=None,
    )
    again = Plan.from_marshal(marshal.loads(marshal.dumps(plan.to_marshal())))
    assert again == plan
    shapeless = plan.to_marshal() | {"confinement": {"capabilities": -1}}
    with pytest.raises(TypeError):
        Plan.from_marshal(shapeless)
