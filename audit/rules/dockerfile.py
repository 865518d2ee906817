"""Dockerfile rules. Only the final stage decides the runtime user; `FROM stage` is not an
image; hygiene rules read RUN scripts, heredocs included."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pysbx.audit.findings import Finding
from pysbx.audit.rules import finding, is_root_user
from pysbx.audit.rules.references import pinning_finding
from pysbx.audit.secrets import secret_in_assignment
from pysbx.audit.sources.dockerfile import Dockerfile, Instruction, Stage

_CURL_PIPE = re.compile(r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(ba|z|da|k)?sh\b")
_SUDO = re.compile(r"(^|[;&|]\s*|\s)sudo\s")
_UPGRADE = re.compile(
    r"\b(apt-get|apt)\s+(-\S+\s+)*(dist-)?upgrade\b|\bapk\s+upgrade\b|\b(yum|dnf)\s+(-\S+\s+)*(update|upgrade)\s*($|[;&|])"
)
# chmod [options] MODE and install ... -m MODE / --mode=MODE; options of chmod start with "-"
# (a mode such as -x only removes bits, so passing over it misses no setuid).
_CHMOD = re.compile(r"\bchmod\s+(?:-\S*\s+)*([^\s;&|<>]+)")
_INSTALL_MODE = re.compile(r"\binstall\b[^;&|\n]*?\s(?:-m\s*|--mode[=\s]\s*)([^\s;&|<>]+)")
_ARCHIVE = re.compile(r"\.(tar|tar\.gz|tgz|tar\.bz2|tbz2|tar\.xz|txz|tar\.zst)$")


def dockerfile_findings(dockerfile: Dockerfile) -> Iterator[Finding]:
    """Findings per stage, each naming its stage as the subject (two `FROM` lines are two
    objects to a baseline); the runtime user's finding names the final stage."""
    aliases = {stage.alias.lower() for stage in dockerfile.stages if stage.alias}
    for stage in dockerfile.stages:
        subject = f"stage {stage.alias}" if stage.alias else f"stage {stage.index}"
        for found in _stage_findings(dockerfile, stage, aliases):
            found.subject = subject
            yield found
    for found in _final_user(dockerfile):
        found.subject = "final stage"
        yield found


def _stage_findings(dockerfile: Dockerfile, stage: Stage, aliases: set[str]) -> Iterator[Finding]:
    yield from _base_image(dockerfile, stage, aliases)
    for instruction in stage.instructions:
        yield from _instruction(dockerfile.path, instruction)


def _base_image(dockerfile: Dockerfile, stage: Stage, aliases: set[str]) -> Iterator[Finding]:
    reference = stage.base_resolved
    if reference.lower() in aliases or reference == "scratch":
        return
    shown = "" if reference == stage.base else f" ({stage.base})"
    found = pinning_finding(reference, dockerfile.path, "FROM", stage.line)
    if found is not None:
        found.message += shown
        yield found


def _final_user(dockerfile: Dockerfile) -> Iterator[Finding]:
    """The runtime user is the last USER of the final stage, or of the stage it builds on."""
    stage: Stage | None = dockerfile.stages[-1]
    seen = set()
    while stage is not None and stage.index not in seen:
        seen.add(stage.index)
        users = [i for i in stage.instructions if i.keyword == "USER"]
        if users:
            last = users[-1]
            if is_root_user(last.arguments.split()[0] if last.arguments else ""):
                yield finding(
                    "root-user",
                    dockerfile.path,
                    f"the final stage's last USER is {last.arguments!r} (root)",
                    last.line,
                )
            return
        stage = dockerfile.stage_named(stage.base_resolved)
    final = dockerfile.stages[-1]
    yield finding(
        "root-user",
        dockerfile.path,
        "the final stage sets no USER: the container runs as the base image's user, root for most images",
        final.line,
    )


def sets_special_bits(mode: str) -> bool:
    """A mode that gives the setuid or setgid bit: octal 4xxx/2xxx (1xxx is only sticky),
    or symbolic clauses that add or set s (u+s, g+s, +s, a=rwxs)."""
    if re.fullmatch(r"[0-7]{1,6}", mode):
        return int(mode, 8) & 0o6000 != 0
    return any(re.search(r"[+=][rwxXtugo]*s", clause) for clause in mode.split(","))


def _setuid(path: str, instruction: Instruction) -> Iterator[Finding]:
    """COPY/ADD --chmod, and chmod or install -m in a RUN script (heredocs included)."""
    modes: list[tuple[str, str]] = []
    if instruction.keyword in ("COPY", "ADD") and "chmod" in instruction.flags:
        modes.append((instruction.flags["chmod"], f"{instruction.keyword} --chmod"))
    if instruction.keyword == "RUN":
        script = instruction.script
        modes += [(match.group(1), "chmod") for match in _CHMOD.finditer(script)]
        modes += [(match.group(1), "install -m") for match in _INSTALL_MODE.finditer(script)]
    for mode, how in modes:
        if sets_special_bits(mode):
            message = f"{how} {mode} sets the setuid or setgid bit: the file runs with its owner's or group's rights"
            yield finding("setuid", path, message, instruction.line, evidence=f"{how} {mode}")


def _instruction(path: str, instruction: Instruction) -> Iterator[Finding]:
    keyword = instruction.keyword
    yield from _setuid(path, instruction)
    if keyword == "ADD":
        yield from _add(path, instruction)
    elif keyword == "RUN":
        yield from _run(path, instruction)
    elif keyword in ("ENV", "ARG", "LABEL"):
        for name, value in _assignments(instruction.arguments):
            reason = secret_in_assignment(name, value)
            if reason:
                yield finding("secret", path, f"{keyword} {name}: {reason}", instruction.line, evidence=name)


def _add(path: str, instruction: Instruction) -> Iterator[Finding]:
    if "checksum" in instruction.flags:
        return
    sources = (instruction.exec_form or instruction.arguments.split())[:-1]
    for source in sources:
        if source.startswith(("http://", "https://", "git@")) or source.endswith(".git"):
            yield finding(
                "add-url",
                path,
                f"ADD {source} downloads without a checksum; use RUN curl with a checksum, or ADD --checksum",
                instruction.line,
                evidence=source,
            )
        elif _ARCHIVE.search(source):
            yield finding(
                "add-url",
                path,
                f"ADD {source} unpacks an archive implicitly; prefer COPY and an explicit tar",
                instruction.line,
                severity="low",
                evidence=source,
            )


def _run(path: str, instruction: Instruction) -> Iterator[Finding]:
    script = instruction.script
    if _CURL_PIPE.search(script):
        yield finding("curl-pipe-shell", path, "RUN pipes a download straight into a shell", instruction.line)
    if _SUDO.search(script):
        yield finding("sudo", path, "RUN uses sudo", instruction.line)
    if _UPGRADE.search(script):
        yield finding("apt-upgrade", path, "RUN upgrades all packages", instruction.line)
    yield from _package_caches(path, instruction, script)


def _package_caches(path: str, instruction: Instruction, script: str) -> Iterator[Finding]:
    if re.search(r"\bapt-get\s+(-\S+\s+)*install\b", script) and "/var/lib/apt/lists" not in script:
        yield finding(
            "package-cache",
            path,
            "apt-get install without removing /var/lib/apt/lists in the same RUN",
            instruction.line,
            evidence="apt",
        )
    if re.search(r"\bapk\s+(-\S+\s+)*add\b", script) and "--no-cache" not in script and "/var/cache/apk" not in script:
        yield finding("package-cache", path, "apk add without --no-cache", instruction.line, evidence="apk")
    if (
        re.search(r"\bpip3?\s+install\b", script)
        and "--no-cache-dir" not in script
        and "PIP_NO_CACHE_DIR" not in script
    ):
        yield finding("package-cache", path, "pip install without --no-cache-dir", instruction.line, evidence="pip")


def _assignments(arguments: str) -> list[tuple[str, str]]:
    """ENV/ARG/LABEL `k=v k2="v 2"` or the legacy `ENV k v` form."""
    pairs = re.findall(r"([A-Za-z_][A-Za-z0-9_.-]*)=(\"[^\"]*\"|'[^']*'|\S*)", arguments)
    if pairs:
        return [(name, value.strip("\"'")) for name, value in pairs]
    name, _, value = arguments.partition(" ")
    return [(name, value.strip())] if value else []
