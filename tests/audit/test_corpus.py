"""pyaudit on real-world files nobody on this project wrote (../shared/testdata): every
file parses, the counts per category are recorded, checkov's labelled fixtures agree with
our verdicts (each deliberate difference explained), and dive's numbers are reproduced."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from pysbx.audit.efficiency import FinalTree, dive_efficiency, wasted_files
from pysbx.audit.engine import audit
from pysbx.images import open_image
from pysbx.images.layers import walk_layer
from tests.conftest import SHARED

TESTDATA = SHARED / "testdata"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def test_every_realworld_file_parses_and_the_counts_are_recorded() -> None:
    root = need(TESTDATA / "realworld")
    result = audit([str(root)])
    kinds = collections.Counter(result.kinds.values())
    assert kinds == {"kubernetes": 245, "dockerfile": 237, "compose": 39}
    by_category = collections.Counter(f.category for f in result.findings)
    # Recorded on 2026-11-28; a change here is a change of behaviour to review.
    assert by_category["privileged"] == 8
    assert by_category["docker-socket"] == 6
    assert by_category["host-network"] == 5
    assert by_category["host-pid"] == 4
    assert by_category["host-ipc"] == 2
    assert by_category["dangerous-capability"] == 3
    assert by_category["supply-chain"] == 2
    assert by_category["published-port"] == 77  # 67 Compose ports, 10 Kubernetes hostPorts
    assert by_category["unpinned-image"] >= 430 and by_category["root-user"] >= 350


def test_kubernetes_examples_recall() -> None:
    """The folder holds privileged x9, hostPID x5, hostNetwork x5, hostIPC x3 (grep counts).
    One of each is a PodSecurityPolicy that *permits* them: a permission, not a container,
    and removed from Kubernetes in 1.25, so we report 8/4/4/2."""
    root = need(TESTDATA / "realworld/kubernetes-examples")
    result = audit([str(root)])
    count = collections.Counter(f.category for f in result.findings)
    assert (count["privileged"], count["host-pid"], count["host-network"], count["host-ipc"]) == (8, 4, 4, 2)
    latest = [f for f in result.findings if f.rule_id == "PA1020"]
    assert len(latest) >= 65  # the README counts 71 latest/untagged images, some ${VARS} we cannot judge


CHECKOV = {
    "PrivilegedContainers": ("privileged",),
    "ShareHost": ("host-pid", "host-network", "host-ipc"),
    "RootContainers": ("root-user",),
    "ImageTagFixed": ("PA1020",),
    "ImageDigest": ("PA1020", "PA1021"),
    "DockerSocketVolume": ("docker-socket",),
    "AllowedCapabilitiesSysAdmin": ("dangerous-capability",),
    "AllowPrivilegeEscalation": ("no-new-privileges",),
    "Seccomp": ("seccomp-disabled",),
}
DELIBERATE = {
    # spec is a list, not a mapping; `securityContext: runAsUser:65534 fsGroup:65534` (no
    # space after the colons) is one string: manifests the API server rejects. We judge no
    # container in them and do not guess: an input error, which fails the gate with exit 2.
    "RootContainers/rootContainersFAILED-malformed-spec.yaml": "ERROR",
    "RootContainers/rootContainersFAILED_2.yaml": "ERROR",
    # `containers:` holds one mapping, not a list of them: the same.
    "AllowPrivilegeEscalation/pod-runas1000-malformed-PASSED.yaml": "ERROR",
    # `@sha256:123456` is not a digest (64 hex digits are); it pins nothing, so we report it.
    "ImageDigest/imageWithTagAndDigest-PASSED.yaml": "FAILED",
    "ImageDigest/kafka-PASSED.yaml": "FAILED",
    "ImageDigest/kafka-withrepo-PASSED.yaml": "FAILED",
    # `containers:` is empty: no container adds a capability.
    "AllowedCapabilitiesSysAdmin/pod-FAILED2.yaml": "PASSED",
}


def _cases() -> list[tuple[str, str, tuple[str, ...]]]:
    root = TESTDATA / "checkov-kubernetes"
    if not root.exists():
        return []
    cases = []
    for folder, wanted in CHECKOV.items():
        for path in sorted((root / folder).iterdir()):
            label = (
                "FAILED"
                if "FAILED" in path.name
                else "PASSED"
                if ("PASS" in path.name or "pass" in path.name)
                else None
            )
            if label is not None:
                cases.append((f"{folder}/{path.name}", label, wanted))
    return cases


@pytest.mark.parametrize(
    ("name", "label", "wanted"), _cases() or [pytest.param("", "", (), marks=pytest.mark.skip("no checkov data"))]
)
def test_checkov_fixtures_agree_with_our_verdicts(name: str, label: str, wanted: tuple[str, ...]) -> None:
    result = audit([str(TESTDATA / "checkov-kubernetes" / name)])
    hits = [f for f in result.findings if f.category in wanted or f.rule_id in wanted]
    verdict = "ERROR" if result.input_errors else "FAILED" if hits else "PASSED"
    assert verdict == DELIBERATE.get(name, label), [(f.rule_id, f.message) for f in hits]


def test_dive_numbers_are_reproduced_exactly() -> None:
    path = need(TESTDATA / "dive/test-docker-image.tar")
    image = open_image(str(path))
    layers = [[member.entry for member in walk_layer(image, layer)] for layer in image.layers]
    dive = dive_efficiency(layers)
    assert dive.efficiency == 0.9844212134184309
    assert dive.wasted_bytes == 32025
    assert {(path, size) for path, _, size in dive.inefficient} == {
        ("/root/saved.txt", 12810),
        ("/root/example/somefile1.txt", 12810),
        ("/root/example/somefile3.txt", 6405),
    }
    sizes = [sum(e.size for e in entries if e.kind == "file") for entries in layers]
    assert sum(sizes) == 1220598 and sum(sizes[1:]) == 66237
    assert (
        dive.wasted_bytes / sum(sizes[1:]) == dive.user_wasted_ratio == 0.4834911001404049
    )  # dive's userWastedPercent
    # Our own measure, by its definition: every stored version not visible at the end.
    final = FinalTree()
    for index, entries in enumerate(layers):
        final.apply_layer(index, entries)
    wasted = wasted_files(layers, final)
    assert sorted((w.path, w.layer) for w in wasted) == [
        ("root/example/somefile1.txt", 3),
        ("root/example/somefile1.txt", 4),
        ("root/example/somefile2.txt", 5),  # removed with /root/example in layer 10
        ("root/example/somefile3.txt", 6),  # moved away in layer 8
        ("root/saved.txt", 7),  # chmod'ed again in layer 14
    ]
    assert sum(w.size for w in wasted) == 32025


def test_strict_gates_the_dive_image_as_dive_ci_does() -> None:
    """`dive --ci` fails this image on highestUserWastedPercent (48.3% > 10%) though its
    efficiency (0.984) passes; strict carries dive's CI defaults, so pyaudit fails it too."""
    from pysbx.audit.engine import AuditOptions
    from pysbx.policies.loader import load_policy

    path = need(TESTDATA / "dive/test-docker-image.tar")
    result = audit([str(path)], AuditOptions(policy=load_policy("strict").policy))
    bloat = [f for f in result.findings if f.rule_id == "PA1030"]
    assert (
        len(bloat) == 1
        and "dive user-wasted 48.3%" in bloat[0].message
        and "dive efficiency 0.9844" in bloat[0].message
    )


def test_the_dive_image_audits_with_its_summary() -> None:
    path = need(TESTDATA / "dive/test-docker-image.tar")
    result = audit([str(path)])
    summary = result.images[0]
    assert (summary.dive_efficiency, summary.dive_wasted_bytes, summary.wasted_bytes) == (
        0.9844212134184309,
        32025,
        32025,
    )


def test_no_two_realworld_findings_share_a_fingerprint() -> None:
    """GitHub code scanning merges results of one rule and fingerprint into one alert: three
    Deployments of one file, or two FROM lines, must stay apart."""
    root = need(TESTDATA / "realworld")
    result = audit([str(root)])
    fingerprints = collections.Counter((f.rule_id, f.fingerprint) for f in result.findings)
    assert [key for key, count in fingerprints.items() if count > 1] == []
    subjects = collections.Counter(f.subject is not None for f in result.findings)
    assert subjects[False] == 0, "every finding of a text input names its object"


def test_a_bad_service_added_to_the_baselined_corpus_is_exactly_what_is_new(tmp_path: Path) -> None:
    """The corpus walked with --write-baseline, then one privileged service added to one of
    its Compose files (a copy under tmp_path): the one new finding is all that gates."""
    import shutil

    from pysbx.audit.engine import AuditOptions

    corpus = shutil.copytree(need(TESTDATA / "realworld"), tmp_path / "realworld", symlinks=True)
    baseline = {f.fingerprint for f in audit([str(corpus)]).findings}
    compose = next(path for path in sorted(corpus.rglob("compose.yaml")) if "services:\n" in path.read_text())
    text = compose.read_text().replace(
        "services:\n",
        f"services:\n  intruder:\n    image: busybox:1.36@sha256:{'0' * 64}\n    privileged: true\n    read_only: true\n    security_opt: [no-new-privileges:true]\n    user: '1000'\n",
        1,
    )
    compose.write_text(text)
    result = audit([str(corpus)], AuditOptions(baseline=baseline))
    assert [(f.rule_id, f.subject) for f in result.findings] == [("PA1001", "service intruder")], result.findings
