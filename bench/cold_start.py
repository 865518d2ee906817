"""Benchmark: the first run of a real Debian image, pysandbox against podman + runc, as root
and as an ordinary user, in one run on this machine (issue #20's goal: cold no slower than
podman). The image is tests/realworld's python3 image (mmdebstrap --variant=minbase
--include=python3, one uncompressed layer); run those tests once to build it, or pass
--image.

    .venv/bin/python bench/cold_start.py [--image ARCHIVE] [--runs N] [--no-append]

Cold, for each engine: storage emptied before every run (hyperfine --prepare), then the
image loaded and `true` run in it. pysandbox: `run --rm` under strict without signing (the
layer verified and unpacked, the policy compiled, the plan written). podman: `load -i` into
an empty --root, then `run --rm --network=none` (cgroupfs, runc: PEERS.md), with two storage
drivers: vfs (PEERS.md's; it copies the image into every container) and overlay (native
rootless overlay, kernel 6). Warm: each again with the image in storage. Needs root (the
ordinary user is bench/run.py's `benchuser`, run through runuser), hyperfine and podman.
About 5 minutes on 2 cores."""

from __future__ import annotations

import argparse
import glob
import json
import shlex
import sys
import tarfile
from pathlib import Path

import benchlib as b
import run as startup

W = b.WORK / "cold-start"
POLICY = W / "strict-unsigned.yaml"
PYSANDBOX = b.REPO / ".venv" / "bin" / "pysandbox"
REALWORLD = "/var/cache/pysandbox-tests/realworld/python-*.tar"
ROOT_RUNROOT = Path("/run/pysandbox-bench")  # podman refuses a runroot longer than 50 characters
PODMAN_ROOT_LIMITS = "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"  # root here lacks CAP_SYS_RESOURCE


def image_reference(archive: Path) -> str:
    """The archive's first RepoTag, as podman names the image it loads."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return f"localhost/{json.load(member)[0]['RepoTags'][0]}"


def engines(archive: Path, user: startup.User) -> list[tuple[str, str, str]]:
    """(name, command, prepare) for each row: cold and warm, pysandbox and podman, root and user."""
    reference = image_reference(archive)
    as_user = shlex.join(user.prefix())
    rows = []
    for who, prefix, state, home, runtime, limits in (
        ("root", "", W / "state-root", W, ROOT_RUNROOT, PODMAN_ROOT_LIMITS),
        (user.name, as_user, user.home / "cold-start-state", user.home, user.runtime_dir, ""),
    ):
        ours = f"{prefix} env PYSANDBOX_STATE={state} {PYSANDBOX} run --rm --policy {POLICY} {archive} true".strip()
        rows += [(f"pysandbox run, cold ({who})", ours, f"rm -rf {state}"), (f"pysandbox run, warm ({who})", ours, "")]
        for driver in ("vfs", "overlay"):  # vfs copies the image per container; overlay stacks it
            storage = f"--root {home}/cold-start-{driver} --runroot {runtime}/cold-start-{driver}-run"
            podman = f"podman --storage-driver={driver} --cgroup-manager=cgroupfs --runtime=runc {storage}"
            load = f"{prefix} {podman} load -q -i {archive}"
            theirs = f"{prefix} {podman} run --rm --network=none {limits} {reference} true".strip()
            empty = f"rm -rf {home}/cold-start-{driver} {runtime}/cold-start-{driver}-run"
            rows += [
                (f"podman {driver}: load + run, cold ({who})", f"sh -c {shlex.quote(f'{load} >/dev/null && {theirs}')}",
                 empty),
                (f"podman {driver}: run, warm ({who})", theirs, ""),
            ]  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, help=f"default: the newest {REALWORLD}")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    found = sorted(glob.glob(REALWORLD), key=lambda path: Path(path).stat().st_mtime)
    archive = args.image or (Path(found[-1]) if found else None)
    if archive is None:
        sys.exit(f"no image: run `sh tests/run.sh tests/realworld` once (it builds {REALWORLD}), or pass --image")
    log: list[str] = []
    with b.machine_lock():
        user = startup.ensure_user(log)
        W.mkdir(parents=True, exist_ok=True)
        W.chmod(0o755)
        text = (b.REPO / "policies/strict.yaml").read_text().replace("  required: true", "  required: false")
        POLICY.write_text(text)
        POLICY.chmod(0o644)
        rows = engines(archive.resolve(), user)
        cold = [row for row in rows if "cold" in row[0]]
        warm = [row for row in rows if "warm" in row[0]]
        for _, command, prepare in cold + warm:  # each checked once (and the warm caches filled)
            if prepare:
                startup.run_logged(["sh", "-c", prepare], log)
            startup.run_logged(["sh", "-c", command], log, capture_output=True)
        measured_cold, argv_cold, note_cold = b.measure(
            [(n, c) for n, c, _ in cold], [p for _, _, p in cold], W / "cold.json", 0, args.runs
        )
        measured_warm, argv_warm, note_warm = b.measure([(n, c) for n, c, _ in warm], "", W / "warm.json", 1, 5)
        for _, _, prepare in cold:  # the storages hold whole copies of the image: gone once measured
            startup.run_logged(["sh", "-c", prepare], log)
    body = report(archive, measured_cold + measured_warm, f"cold: {note_cold}; warm: {note_warm}")
    print(body)
    if not args.no_append:
        b.append_results(
            "Cold first run of a Debian python3 image: pysandbox vs podman", body,
            [*log, shlex.join(argv_cold), shlex.join(argv_warm)],
        )  # fmt: skip


def report(archive: Path, measured: list[b.Measured], note: str) -> str:
    rows = [
        [m.name, b.fmt_s(m.median), f"{b.fmt_s(m.mean)} ± {b.fmt_s(m.stddev)}", str(len(m.times))] for m in measured
    ]
    by_name = {m.name: m.median for m in measured}
    goals = []
    for who in sorted({m.name.rsplit("(", 1)[1].rstrip(")") for m in measured}):
        ours = by_name[f"pysandbox run, cold ({who})"]
        theirs = min(by_name[f"podman {driver}: load + run, cold ({who})"] for driver in ("vfs", "overlay"))
        verdict = "met" if ours <= theirs else "**missed**"
        goals.append(
            f"- Cold ({who}): pysandbox / podman's faster driver = {ours / theirs:.2f}x: goal (no slower) {verdict}."
        )
    size = archive.stat().st_size / 1e6
    return "\n".join([
        f"Image: `{archive.name}`, {size:.0f} MB (one uncompressed layer). Load: {note}.",
        "",
        b.table(["command", "median s", "mean ± sd s", "runs"], rows),
        "",
        *goals,
    ])  # fmt: skip


if __name__ == "__main__":
    main()
