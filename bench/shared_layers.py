"""Benchmark: what per-layer caching saves `pysandbox run` when two images share their lower
layers. Images A and B are the busybox example rootfs, then a 54 MB "runtime" layer (a copy
of this machine's /usr/lib/python3.11), then one small layer of their own. Layers are cached
by chain id, so once A has run, B unpacks only its top layer.

    .venv/bin/python bench/shared_layers.py [--runs N] [--no-append]

Rows (as root, `pysandbox run --rm IMAGE /bin/true` under strict without signing): B on an
empty cache; B after A ran on an empty cache (hyperfine --prepare empties the cache and runs
A, untimed); B warm. It also reports the layer cache's size with both images in it against
the two images unpacked apart. Everything it makes lives in bench/work/shared-layers/. About
a minute on 2 cores."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import benchlib as b

W = b.WORK / "shared-layers"
PYSANDBOX = b.REPO / ".venv" / "bin" / "pysandbox"
STATE = W / "state"
POLICY = W / "strict-unsigned.yaml"
RUNTIME_SOURCE = Path("/usr/lib/python3.11")


def build(log: list[str]) -> tuple[Path, Path]:
    """The three folders and the two images (rebuilt each time: deterministic, seconds)."""
    shutil.rmtree(W, ignore_errors=True)
    W.mkdir(parents=True)
    busybox, runtime = W / "busybox", W / "runtime"
    commands = [
        ["sh", "examples/busybox/make-rootfs.sh", b.rel(busybox)],
        ["mkdir", "-p", b.rel(runtime / "usr/lib")],
        ["cp", "-a", str(RUNTIME_SOURCE), b.rel(runtime / "usr/lib")],
    ]
    for name in ("a", "b"):
        (W / f"app-{name}" / "app").mkdir(parents=True)
        (W / f"app-{name}" / "app" / "version").write_text(f"{name}\n")
    images = (W / "a.tar", W / "b.tar")
    for image, name in zip(images, ("a", "b"), strict=True):
        commands.append(
            [b.rel(PYSANDBOX), "image", "build", b.rel(busybox), b.rel(runtime), b.rel(W / f"app-{name}"),
             "-o", b.rel(image), "--format", "docker-archive", "--cmd", "/bin/sh", "--tag", f"bench/shared:{name}"]
        )  # fmt: skip
    for argv in commands:
        log.append(shlex.join(argv))
        subprocess.run(argv, check=True, cwd=b.REPO, stdout=subprocess.DEVNULL)
    strict = (b.REPO / "policies" / "strict.yaml").read_text()
    before, signing, after = strict.partition("\nsigning:\n")
    assert signing and "\n  required: true\n" in after, "policies/strict.yaml: no signing.required: true"
    POLICY.write_text(before + signing + after.replace("\n  required: true\n", "\n  required: false\n", 1))
    log.append(f"sed '/^signing:/,/^$/s/^  required: true/  required: false/' policies/strict.yaml > {b.rel(POLICY)}")
    return images


def run(image: Path) -> str:
    return f"env PYSANDBOX_STATE={b.q(STATE)} {b.q(PYSANDBOX)} run --rm --policy {b.q(POLICY)} {b.q(image)} /bin/true"


def cache_bytes() -> int:
    """Bytes of the layer cache (du: a hard-linked or shared file counts once)."""
    done = subprocess.run(["du", "-sb", str(STATE / "layers")], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (the rows are root's runs)", file=sys.stderr)
        return 2
    log: list[str] = []
    image_a, image_b = build(log)
    empty = f"rm -rf {b.q(STATE)}"
    commands = [
        ("B, empty cache", run(image_b)),
        ("B, after A (shared layers cached)", run(image_b)),
        ("B, warm", run(image_b)),
    ]
    prepare = [empty, f"{empty} && {run(image_a)}", "true"]  # the warm row runs after the others' B runs
    with b.machine_lock():
        measured, argv, load = b.measure(commands, prepare, W / "hyperfine.json", 2, args.runs)
    sizes = {}
    for label, images in (("A", [image_a]), ("B", [image_b]), ("A and B", [image_a, image_b])):
        subprocess.run(empty, shell=True, check=True)
        for image in images:
            subprocess.run(run(image), shell=True, check=True, cwd=b.REPO, stderr=subprocess.DEVNULL)
        sizes[label] = cache_bytes()
    rows = [[m.name, f"{m.median * 1000:.1f}", f"{m.mean * 1000:.1f} ± {m.stddev * 1000:.1f}"] for m in measured]
    cold, shared = measured[0].median, measured[1].median
    body = "\n".join(
        [
            f"Images: the busybox example rootfs, a {RUNTIME_SOURCE} copy "
            f"({sizes['A'] / 1e6:.0f} MB in the cache with busybox), and one small layer each "
            "(docker-archive, gzip). Root, strict without signing, `--rm ... /bin/true`; "
            f"hyperfine --warmup 2 --runs {args.runs}; the --prepare step (empty the cache, run A) is not timed.",
            "",
            b.table(["command", "median ms", "mean ± sd ms"], rows),
            "",
            f"- B after A: {shared * 1000:.0f} ms against {cold * 1000:.0f} ms on an empty cache "
            f"({cold / shared:.1f}x): only B's own layer is unpacked.",
            f"- Layer cache: A alone {sizes['A'] / 1e6:.1f} MB, B alone {sizes['B'] / 1e6:.1f} MB, both "
            f"{sizes['A and B'] / 1e6:.1f} MB (apart they would take {(sizes['A'] + sizes['B']) / 1e6:.1f} MB).",
            f"- Machine load: {load}.",
            "- No peer row: podman and docker share layers too, but through `load` into their stores, "
            "which this run-from-archive command has no equivalent of.",
        ]
    )
    print(body)
    if not args.no_append:
        b.append_results("pysandbox run: layers shared between images", body, [*log, shlex.join(argv)])
        print(f"\nappended to {b.rel(b.RESULTS)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
