"""The audit: read each input, turn its facts into findings, apply the policy's rule
settings and every kind of suppression, and decide the gate."""

from __future__ import annotations

import os
import re
import stat
import sys

from pysbx.audit.detect import (
    STDIN,
    TAR_HEADER_SIZE,
    AuditInputError,
    expand_targets,
    is_dockerfile_name,
    is_image_archive,
    names_an_image,
)
from pysbx.audit.findings import Finding, at_or_above, number_fingerprints
from pysbx.audit.inputs import TEXT_LIMIT, InputTooLargeError, NotRegularFileError, read_regular
from pysbx.audit.rules import finding
from pysbx.audit.rules.dockerfile import dockerfile_findings
from pysbx.audit.sources.dockerfile import DockerfileError, looks_like_dockerfile, parse_dockerfile
from pysbx.audit.suppress import apply_inline, apply_policy_ignores, inline_suppressions, matches_rule
from pysbx.policies.record import Record
from pysbx.policies.severity import DEFAULT_FAIL_ON

TYPE_CHECKING = False  # typing.TYPE_CHECKING without typing's import (2 ms of a start)
if TYPE_CHECKING:  # images are read only when an image is audited: keep start-up small
    import datetime
    from typing import Protocol

    from pysbx.audit.rules.image_contents import ImageSummary
    from pysbx.images.image import Image
    from pysbx.policies.model import Policy

    class StoredImages(Protocol):
        """What the auditor asks of pysandbox's local store (cli.imagearg.StoredImages)."""

        def holds(self, name: str) -> bool: ...

        def open(self, name: str) -> Image: ...


NOT_AN_INPUT = "not a Dockerfile, Compose file, Kubernetes manifest, docker inspect output or OCI config"


class AuditOptions(Record):
    """What a run is asked to do beyond its targets."""

    __slots__ = (
        "baseline",
        "fail_on",
        "only",
        "policy",
        "policy_file",
        "policy_ignore_line",
        "skip",
        "skip_non_inputs",
        "stored",
        "today",
    )  # fmt: skip

    def __init__(
        self,
        policy: Policy | None = None,
        policy_file: str = "(built-in defaults)",
        policy_ignore_line: int | None = None,
        fail_on: str | None = None,
        only: list[str] | None = None,
        skip: list[str] | None = None,
        baseline: set[str] | None = None,
        skip_non_inputs: bool = False,
        today: datetime.date | None = None,
        stored: StoredImages | None = None,
    ) -> None:
        self.policy = policy  # None: the built-in defaults (no policy model to import)
        self.policy_file = policy_file
        self.policy_ignore_line = policy_ignore_line
        self.fail_on = fail_on
        self.only: list[str] = only if only is not None else []
        self.skip: list[str] = skip if skip is not None else []
        self.baseline = baseline
        # Named files are read as a walk reads its files (for pre-commit hooks, which name every
        # file their pattern matches): one that is no input is passed over, not an error.
        self.skip_non_inputs = skip_non_inputs
        self.today = today  # None: the date when an ignore's expiry is compared
        # Images of pysandbox's local store, for a TARGET that names no file (the front end
        # gives it: the auditor knows nothing of where the runtime keeps things).
        self.stored = stored


class AuditResult(Record):
    """What a run found, and what it passed over."""

    __slots__ = (
        "fail_on",
        "findings",
        "images",
        "input_errors",
        "kinds",
        "skipped",
        "suppressed",
        "targets",
        "tool_version",
    )

    def __init__(
        self,
        targets: list[str],
        findings: list[Finding],
        suppressed: list[Finding],
        images: list[ImageSummary],
        kinds: dict[str, str],
        fail_on: str,
        skipped: list[tuple[str, str]] | None = None,
        input_errors: list[Finding] | None = None,
        tool_version: str = "unknown",
    ) -> None:
        self.targets = targets
        self.findings = findings  # what gates
        self.suppressed = suppressed
        self.images = images
        self.kinds = kinds  # target -> what it was read as
        self.fail_on = fail_on
        self.skipped: list[tuple[str, str]] = skipped if skipped is not None else []  # (path, why) a walk passed over
        self.input_errors: list[Finding] = input_errors if input_errors is not None else []  # also in findings: exit 2
        self.tool_version = tool_version  # set by the front end, which knows the installed distribution

    @property
    def failed(self) -> bool:
        return any(at_or_above(found.severity, self.fail_on) for found in self.findings)


def audit(targets: list[str], options: AuditOptions | None = None) -> AuditResult:
    options = options or AuditOptions()
    collected: list[Finding] = []
    images: list[ImageSummary] = []
    kinds: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    errors: list[Finding] = []
    for path, named in expand_targets(targets, skipped, options.stored.holds if options.stored else None):
        explicit = named and not options.skip_non_inputs
        try:
            kind, target_findings, summary = audit_one(path, explicit, options.policy, options.stored)
        except AuditInputError as error:
            if _walk_may_skip(path, explicit, error):
                skipped.append((path, str(error).removeprefix(f"{path}: ")))
            else:
                errors.append(_input_error(path, error))
            continue
        if kind is None:
            skipped.append((path, NOT_AN_INPUT))
            continue
        kinds[path] = kind
        collected += target_findings
        if summary is not None:
            images.append(summary)
    collected = _apply_rule_settings(collected, options)
    collected += apply_policy_ignores(
        collected,
        options.policy.audit.ignore if options.policy else (),
        options.today,
        options.policy_file,
        options.policy_ignore_line,
    )
    number_fingerprints(collected)
    if options.baseline is not None:
        for found in collected:
            if not found.suppressed and found.fingerprint in options.baseline:
                found.suppressed = "baseline"
    active = [f for f in collected if not f.suppressed]
    number_fingerprints(errors)  # after suppression, which cannot touch them
    return AuditResult(
        targets=list(kinds),
        findings=active + errors,
        suppressed=[f for f in collected if f.suppressed],
        images=images,
        kinds=kinds,
        fail_on=options.fail_on or (options.policy.audit.fail_on if options.policy else DEFAULT_FAIL_ON),
        skipped=skipped,
        input_errors=errors,
    )


def _input_error(path: str, error: AuditInputError) -> Finding:
    """The finding for an input that could not be read, at the line its error names."""
    message = str(error)
    line = message.removeprefix(f"{path}:").split(":", 1)[0] if message.startswith(f"{path}:") else ""
    return finding("input-error", path, message, int(line) if line.isdigit() else None)


def _walk_may_skip(path: str, explicit: bool, error: AuditInputError) -> bool:
    """A walk passes over a file that turned out special (swapped after the listing) and an
    oversized file that does not claim to be ours (a data JSON); a named file, an oversized
    Dockerfile or Compose file is an error: the gate must not pass what it could not read."""
    if explicit or not isinstance(error, (NotRegularFileError, InputTooLargeError)):
        return False
    if isinstance(error, NotRegularFileError):
        return True
    return not (is_dockerfile_name(os.path.basename(path)) or _claims_to_be_ours(path))


def audit_one(
    path: str, explicit: bool, policy: Policy | None, stored: StoredImages | None = None
) -> tuple[str | None, list[Finding], ImageSummary | None]:
    """Findings for one input, or (None, [], None) for a file a directory walk may skip.
    An `explicit` input was named by the user: a symlink to a regular file is followed."""
    if path == STDIN:
        return _audit_text(path, _decoded(path, _read_stdin()), explicit)
    if explicit and not os.path.lexists(path):  # IMAGE:REF or a stored name, which expand_targets let through
        return _audit_image(path, policy, stored)
    if _is_folder(path, explicit):  # expand_targets yields only OCI layouts as folders
        return _audit_image(path, policy)
    if is_image_archive(read_regular(path, TAR_HEADER_SIZE, follow=explicit, truncate=True)):
        return _audit_image(path, policy)
    return _audit_text(path, _decoded(path, read_regular(path, TEXT_LIMIT, follow=explicit)), explicit)


def _audit_text(path: str, text: str, explicit: bool) -> tuple[str | None, list[Finding], None]:
    """A Dockerfile, by name or (named by the user) by content, or YAML/JSON documents."""
    name = os.path.basename(path)  # of a file read: no trailing slash
    if is_dockerfile_name(name) or (
        explicit and looks_like_dockerfile(text) and not name.endswith((".yaml", ".yml", ".json"))
    ):
        try:
            dockerfile = parse_dockerfile(text, path)
        except DockerfileError as error:
            raise AuditInputError(str(error)) from None
        return "dockerfile", _with_inline(list(dockerfile_findings(dockerfile)), text, path), None
    kind, specs = _yaml_specs(path, text, explicit)
    if kind is None:
        return None, [], None
    from pysbx.audit.rules.container import container_findings  # documents only (a Dockerfile's audit skips it)

    findings = [f for spec in specs for f in container_findings(spec)]
    return kind, _with_inline(findings, text, path), None


def _audit_image(
    path: str, policy: Policy | None, stored: StoredImages | None = None
) -> tuple[str, list[Finding], ImageSummary]:
    from pysbx.audit.rules.image_contents import image_findings
    from pysbx.audit.sources.image import gather_facts
    from pysbx.images import ImageError, open_image
    from pysbx.policies.model import Policy

    policy = policy or Policy(version=1)
    try:
        in_store = stored is not None and not names_an_image(path) and stored.holds(path)
        facts = gather_facts(stored.open(path) if stored is not None and in_store else open_image(path))
    except ImageError as error:
        raise AuditInputError(str(error)) from None
    found, summary = image_findings(facts, path, policy)
    return "image", found, summary


def _is_folder(path: str, explicit: bool) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path, follow_symlinks=explicit).st_mode)
    except OSError:
        return False  # read_regular says what is wrong with it


def _read_stdin() -> bytes:
    """Standard input as `-` names it: a Dockerfile or YAML, not an image (save it to a file)."""
    data = sys.stdin.buffer.read(TEXT_LIMIT + 1)
    if len(data) > TEXT_LIMIT:
        raise InputTooLargeError(STDIN, TEXT_LIMIT)
    if is_image_archive(data[:TAR_HEADER_SIZE]):
        raise AuditInputError(f"{STDIN}: an image archive on standard input: save it to a file and name that")
    return data


def _decoded(path: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AuditInputError(f"{path}: not UTF-8 text, not an image archive either") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as text mode reads


def _yaml_specs(path: str, text: str, explicit: bool) -> tuple[str | None, list]:  # type: ignore[type-arg]
    import yaml  # here, not at the top: a Dockerfile's audit never needs it (8 ms)

    from pysbx.audit.sources.documents import DOCUMENT_SOURCES
    from pysbx.audit.sources.yamllines import describe_problem, load_documents

    try:
        documents = [doc for doc in load_documents(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = describe_problem(error)
        if not explicit and not _claims_to_be_ours(path, text):
            return None, []
        raise AuditInputError(f"{where}: not valid YAML or JSON ({problem})") from None
    specs = []
    kinds = set()
    for document in documents:
        source = next((source for source in DOCUMENT_SOURCES if source.detect(document)), None)
        if source is not None:
            kinds.add(source.kind)
            specs += source.to_specs(document, path)
    if not kinds:
        if explicit:
            raise AuditInputError(f"{path}: {NOT_AN_INPUT}")
        return None, []
    return "+".join(sorted(kinds)), specs


_MANIFEST_HEAD = re.compile(r"(?m)^(apiVersion|kind|services):[ \t]")


def _claims_to_be_ours(path: str, text: str | None = None) -> bool:
    """A file a walk may not pass over when it cannot be read: named like a Compose file, or
    starting like a manifest or Compose file (`apiVersion:` and `kind:`, or `services:`, at the
    top level of its first 64 KiB), unless it is a Helm chart's template. Otherwise making a
    manifest too large or unparseable would hide it from the gate while kubectl still reads it."""
    name = os.path.basename(path).lower()
    if "compose" in name:
        return True
    parent = os.path.dirname(path)
    if os.path.basename(parent) == "templates" and os.path.isfile(os.path.join(os.path.dirname(parent), "Chart.yaml")):
        return False  # a Helm template: YAML only once rendered
    if text is None:
        try:
            text = read_regular(path, 64 * 1024, follow=False, truncate=True).decode("utf-8", "replace")
        except (AuditInputError, OSError):
            return False
    keys = set(_MANIFEST_HEAD.findall(text[: 64 * 1024]))
    return {"apiVersion", "kind"} <= keys or "services" in keys


def _with_inline(findings: list[Finding], text: str, target: str) -> list[Finding]:
    covered, problems = inline_suppressions(text, target)
    apply_inline(findings, covered)
    return findings + problems


def _apply_rule_settings(findings: list[Finding], options: AuditOptions) -> list[Finding]:
    """Policy per-rule enable/severity, then --only/--skip."""
    kept = []
    for found in findings:
        rules = options.policy.audit.rules if options.policy else {}
        settings = [s for key, s in rules.items() if matches_rule(key, found)]
        if any(not s.enabled for s in settings):
            continue
        for s in settings:
            if s.severity is not None:
                found.severity = s.severity
        if options.only and not any(matches_rule(key, found) for key in options.only):
            continue
        if any(matches_rule(key, found) for key in options.skip):
            continue
        kept.append(found)
    return kept
