"""A run plan as typed records: what the cold path of `pysandbox run` resolved from an image
and a policy (sandbox.plan.build_plan), and what a warm run reads back from the private
storage (sandbox.warm) instead of loading them again. Plain records, no dataclasses: the
warm start imports this. `to_marshal` gives the built-in types marshal stores;
`from_marshal` rebuilds the records and raises KeyError, TypeError or ValueError for
anything of another shape, which the warm path treats as no plan."""

from __future__ import annotations

from pysbx.policies.record import Record
from pysbx.sandbox.idmap import IdMaps, IdRange
from pysbx.sandbox.limits import Enforcement
from pysbx.sandbox.mounts import TmpfsMount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class ImageRun(Record):
    """The image's own run configuration (what Docker's ENTRYPOINT, CMD, ENV, WORKDIR, USER,
    STOPSIGNAL and HEALTHCHECK say), which the run's flags may override; and which image it
    is (its manifest digest) and what its verification concluded, for `inspect`."""

    __slots__ = (
        "cmd", "digest", "entrypoint", "env", "exposed_ports", "healthcheck", "stop_signal", "user", "verdict",
        "working_dir",
    )  # fmt: skip

    def __init__(
        self,
        entrypoint: list[str] | None,
        cmd: list[str] | None,
        env: list[str],
        working_dir: str,
        user: str,
        *,
        stop_signal: str = "",
        healthcheck: dict[str, Any] | None = None,
        digest: str = "",
        verdict: str = "",
        exposed_ports: list[str] | None = None,  # EXPOSE: what -P publishes
    ) -> None:
        self.entrypoint, self.cmd, self.env = entrypoint, cmd, env
        self.exposed_ports = exposed_ports or []
        self.working_dir, self.user = working_dir, user
        self.stop_signal, self.healthcheck, self.digest, self.verdict = stop_signal, healthcheck, digest, verdict


class Confinement(Record):
    """What the policy (with the policy-sensitive flags applied) gives the container; each
    field is one step of sandbox.runner's init sequence (its docstring has the table)."""

    __slots__ = (
        "capabilities",
        "lifecycle",
        "masked_paths",
        "namespaces",
        "network",
        "network_rules",
        "no_new_privileges",
        "read_only_rootfs",
        "readonly_paths",
        "signing_required",
        "user",
        "user_where",
        "wall_time",
    )

    def __init__(
        self,
        *,
        namespaces: list[str],
        network: str,
        capabilities: int,
        no_new_privileges: bool,
        read_only_rootfs: bool,
        masked_paths: list[str],
        readonly_paths: list[str],
        wall_time: float | None,
        user: str | None,
        user_where: str,
        signing_required: bool,
        lifecycle: dict[str, Any],
        network_rules: dict[str, Any] | None = None,
    ) -> None:
        self.namespaces, self.network, self.capabilities = namespaces, network, capabilities
        # --network, -p and -P as the policy allows them (sandbox.netrules), with its lines
        self.network_rules = network_rules or {}
        # run -d, --restart, --log-opt and exec as the policy allows them (sandbox.lifecycle
        # fields by name, and "where": each one's policy line, for refusals)
        self.lifecycle = lifecycle
        self.no_new_privileges, self.read_only_rootfs = no_new_privileges, read_only_rootfs
        self.masked_paths, self.readonly_paths, self.wall_time = masked_paths, readonly_paths, wall_time
        self.user, self.user_where, self.signing_required = user, user_where, signing_required


class Plan(Record):
    """Everything a run of this image under this policy needs, resolved, and the evidence
    it rests on (sandbox.warm: [path, resolved path, identity] for each file)."""

    __slots__ = (
        "bpf",
        "bundle",
        "confinement",
        "etc_texts",
        "evidence",
        "id_maps",
        "image",
        "limits",
        "lowers",
        "tmpfs",
    )

    def __init__(
        self,
        *,
        lowers: list[str],
        etc_texts: list[str],
        image: ImageRun,
        confinement: Confinement,
        id_maps: IdMaps,
        limits: list[Enforcement],
        tmpfs: list[TmpfsMount],
        bpf: str | None,
        evidence: list[list[Any]],
        bundle: list[Any] | None,
    ) -> None:
        self.lowers, self.etc_texts, self.image, self.confinement = lowers, etc_texts, image, confinement
        self.id_maps, self.limits, self.tmpfs, self.bpf = id_maps, limits, tmpfs, bpf
        self.evidence, self.bundle = evidence, bundle

    def to_marshal(self) -> dict[str, Any]:
        return {
            "lowers": self.lowers,
            "etc_texts": self.etc_texts,
            "image": self.image.as_dict(),
            "confinement": self.confinement.as_dict(),
            "id_maps": {
                "uids": [item.as_dict() for item in self.id_maps.uids],
                "gids": [item.as_dict() for item in self.id_maps.gids],
                "via_helpers": self.id_maps.via_helpers,
            },
            "limits": [item.as_dict() for item in self.limits],
            "tmpfs": [item.as_dict() for item in self.tmpfs],
            "bpf": self.bpf,
            "evidence": self.evidence,
            "bundle": self.bundle,
        }

    @classmethod
    def from_marshal(cls, data: dict[str, Any]) -> Plan:
        maps = data["id_maps"]
        return cls(
            lowers=list(data["lowers"]),
            etc_texts=list(data["etc_texts"]),
            image=ImageRun(**data["image"]),
            confinement=Confinement(**data["confinement"]),
            id_maps=IdMaps(
                tuple(IdRange(**item) for item in maps["uids"]),
                tuple(IdRange(**item) for item in maps["gids"]),
                bool(maps["via_helpers"]),
            ),
            limits=[Enforcement(**item) for item in data["limits"]],
            tmpfs=[TmpfsMount(**item) for item in data["tmpfs"]],
            bpf=data["bpf"],
            evidence=list(data["evidence"]),
            bundle=data["bundle"],
        )
