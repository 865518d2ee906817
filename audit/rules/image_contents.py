"""Image rules: the runtime user and reference from the config, secrets and setuid files
in the layers, and bloat (wasted bytes, dive's efficiency, package caches, big layers)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pysbx.audit.efficiency import FinalTree, dive_efficiency, wasted_files
from pysbx.audit.findings import Finding
from pysbx.audit.rules import finding, is_root_user
from pysbx.audit.rules.references import reference_pinning
from pysbx.audit.secrets import secret_file, secret_in_assignment, token_in
from pysbx.audit.sources.image import ImageFacts
from pysbx.policies.model import Policy
from pysbx.policies.values import format_size

PACKAGE_CACHES = {
    "var/lib/apt/lists/": "apt lists",
    "var/cache/apt/archives/": "apt archives",
    "var/cache/apk/": "apk cache",
    "var/cache/dnf/": "dnf cache",
    "var/cache/yum/": "yum cache",
    "root/.cache/pip/": "pip cache",
    "root/.npm/_cacache/": "npm cache",
    "usr/local/share/.cache/yarn/": "yarn cache",
    "root/.cache/yarn/": "yarn cache",
    "root/.cache/go-build/": "go build cache",
}
_CACHE_PREFIXES = tuple(PACKAGE_CACHES)


@dataclass
class ImageSummary:
    """The `images` entry of the JSON report."""

    target: str
    manifest_digest: str
    layers: list[dict[str, object]]
    wasted_bytes: int
    dive_efficiency: float
    dive_wasted_bytes: int


def image_findings(facts: ImageFacts, target: str, policy: Policy) -> tuple[list[Finding], ImageSummary]:
    final = facts.final
    findings = [
        *_config(facts, target),
        *_secrets(facts, target, final),
        *_setuid(facts, target, final),
        *_unsigned(facts, target, policy),
    ]
    summary, bloat = _bloat(facts, target, final, policy)
    findings += bloat
    return findings, summary


def _layer_digest(facts: ImageFacts, index: int) -> str:
    return str(facts.image.layers[index].digest)


def _config(facts: ImageFacts, target: str) -> Iterator[Finding]:
    config = facts.image.config
    if is_root_user(config.user):
        shown = repr(config.user) if config.user else "not set"
        yield finding("root-user", target, f"the image's USER is {shown}: containers run as root")
    for reference in facts.image.references:
        if reference_pinning(reference) == "none" and "@" not in reference:
            yield finding(
                "unpinned-image",
                target,
                f"the image is tagged {reference!r}: no version tag",
                evidence=reference,
            )
    for variable in config.env:
        name, _, value = variable.partition("=")
        reason = secret_in_assignment(name, value)
        if reason:
            yield finding("secret", target, f"ENV {name} {reason}", evidence=name)
    for entry in config.history:
        found = token_in(entry.created_by)
        if found:
            yield finding("secret", target, f"a history line holds {found}: {entry.created_by[:80]}", evidence=found)


def _secrets(facts: ImageFacts, target: str, final: FinalTree) -> Iterator[Finding]:
    visible: set[tuple[str, int]] | None = None  # made at the first secret: most images have none
    for index, entries in enumerate(facts.layers):
        for entry in entries:
            if entry.kind != "file" or entry.whiteout is not None:
                continue
            why = facts.secrets.get((index, entry.path)) or secret_file(entry.path)
            if why is None:
                continue
            if visible is None:
                visible = {(path, version.layer) for path, version in final.files()}
            gone = "" if (entry.path, index) in visible else " (deleted later, but still in the layer)"
            yield finding(
                "secret",
                target,
                f"/{entry.path} holds {why}{gone}",
                layer=_layer_digest(facts, index),
                path="/" + entry.path,
                evidence=why,
            )


def _setuid(facts: ImageFacts, target: str, final: FinalTree) -> Iterator[Finding]:
    special = [(path, version) for path, version in final.files() if version.entry.mode & 0o6000]
    for path, version in sorted(special, key=lambda item: item[0]):
        entry = version.entry
        if entry.kind == "file":
            bits = "setuid" if entry.mode & 0o4000 else "setgid"
            yield finding(
                "setuid",
                target,
                f"/{path} is {bits} (mode {entry.mode:04o}, owner {entry.uid})",
                layer=_layer_digest(facts, version.layer),
                path="/" + path,
                evidence=bits,
            )


def _unsigned(facts: ImageFacts, target: str, policy: Policy) -> Iterator[Finding]:
    """When the policy requires signatures, the image must carry one that verifies."""
    if not policy.signing.required:
        return
    from pysbx.signing.verify import verify_image

    verdict = verify_image(facts.image, policy.signing)
    if not verdict.verified:
        yield finding("unsigned-image", target, verdict.reason or "no verifying signature")


def _bloat(facts: ImageFacts, target: str, final: FinalTree, policy: Policy) -> tuple[ImageSummary, list[Finding]]:
    thresholds = policy.audit.thresholds
    wasted = wasted_files(facts.layers, final)
    wasted_bytes = sum(item.size for item in wasted)
    stored = sum(entry.size for entries in facts.layers for entry in entries if entry.kind == "file")
    dive = dive_efficiency(facts.layers)
    findings: list[Finding] = []
    ratio = wasted_bytes / stored if stored else 0.0
    worst = sorted(wasted, key=lambda item: -item.size)[:3]
    evidence = ", ".join(f"/{item.path} ({format_size(item.size)} in layer {item.layer + 1})" for item in worst)
    over_bytes = thresholds.max_wasted_bytes is not None and wasted_bytes > thresholds.max_wasted_bytes
    over_ratio = thresholds.max_wasted_ratio is not None and ratio > thresholds.max_wasted_ratio
    low_score = thresholds.min_efficiency is not None and dive.efficiency < thresholds.min_efficiency
    over_user = (
        thresholds.max_user_wasted_ratio is not None and dive.user_wasted_ratio > thresholds.max_user_wasted_ratio
    )
    if over_bytes or over_ratio or low_score or over_user:
        findings.append(
            finding(
                "bloated-layer",
                target,
                f"{wasted_bytes} bytes ({ratio:.1%} of all stored) are stored but not in the final filesystem; "
                f"dive efficiency {dive.efficiency:.4f}, dive user-wasted {dive.user_wasted_ratio:.1%}",
                evidence=evidence,
            )
        )
    findings += _package_caches(facts, target, final)
    findings += _oversized(facts, target, policy)
    layers = [
        {
            "digest": str(layer.digest),
            "size": layer.size,
            "files_bytes": sum(e.size for e in facts.layers[layer.index] if e.kind == "file"),
            "created_by": layer.history.created_by if layer.history else "",
            "wasted_bytes": sum(item.size for item in wasted if item.layer == layer.index),
        }
        for layer in facts.image.layers
    ]
    summary = ImageSummary(
        target, str(facts.image.manifest_digest), layers, wasted_bytes, dive.efficiency, dive.wasted_bytes
    )
    return summary, findings


def _package_caches(facts: ImageFacts, target: str, final: FinalTree) -> list[Finding]:
    sizes: dict[str, tuple[int, int]] = {}
    for path, version in final.files():
        if version.entry.kind != "file" or path.endswith(("/lock", "/partial")):
            continue
        if not path.startswith(_CACHE_PREFIXES):
            continue  # one test in C for the common case: no cache here
        for prefix, name in PACKAGE_CACHES.items():
            if path.startswith(prefix):
                total, layer = sizes.get(name, (0, version.layer))
                sizes[name] = (total + version.entry.size, max(layer, version.layer))
    return [
        finding(
            "package-cache",
            target,
            f"{name} left in the image: {format_size(total)}",
            layer=_layer_digest(facts, layer),
            evidence=name,
        )
        for name, (total, layer) in sorted(sizes.items())
        if total > 0
    ]


def _oversized(facts: ImageFacts, target: str, policy: Policy) -> list[Finding]:
    limit = policy.audit.thresholds.max_layer_size
    if limit is None:
        return []
    return [
        finding(
            "oversized-layer",
            target,
            f"layer {layer.index + 1} is {format_size(layer.size)}, over {format_size(limit)}",
            layer=str(layer.digest),
        )
        for layer in facts.image.layers
        if layer.size > limit
    ]
