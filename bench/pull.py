"""Benchmark: `pysandbox pull` against `skopeo copy docker://... oci:DIR` (and `podman pull`,
which also unpacks every layer into its vfs storage, shown for scale), of a ~500 MB, 10-layer
gzip image from Debian's docker-registry on loopback. Every run starts from an empty store
or folder; every tool verifies every blob's digest. Medians of hyperfine runs, peak RSS from
GNU time.

    .venv/bin/python bench/pull.py [--runs N] [--warmup N] [--no-append]

Needs docker-registry, skopeo and hyperfine (podman is optional). Root only (podman's storage
and the registry's port are set up as root here). Goal from the issue: at or below skopeo's
time with every digest verified, memory bounded."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import benchlib as b
import unpack

SPEC = unpack.SPEC  # the image of bench/unpack.py: the same bytes, generated once
W = b.WORK / "pull"
BIN = b.REPO / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_registry(port: int) -> subprocess.Popen[bytes]:
    storage = W / "registry"
    shutil.rmtree(storage, ignore_errors=True)
    config = W / "registry.yml"
    config.write_text(json.dumps({
        "version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))  # fmt: skip
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("docker-registry did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/pull.py runs as root")
    W.mkdir(parents=True, exist_ok=True)
    image = b.generate(SPEC)
    layout = image.layout("gzip")
    port = free_port()
    registry = start_registry(port)
    try:
        name = f"127.0.0.1:{port}/bench/big:1"
        subprocess.run(
            ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:{b.TAG}", f"docker://{name}"], check=True
        )
        blob_bytes = sum(path.stat().st_size for path in image.layer_blobs("gzip"))
        report(name, blob_bytes, args)
    finally:
        registry.send_signal(signal.SIGTERM)
        registry.wait(10)


def report(name: str, blob_bytes: int, args: argparse.Namespace) -> None:
    state, oci, podman_root = W / "state", W / "skopeo-oci", W / "podman"
    rss = {0: W / "rss-pysandbox", 1: W / "rss-skopeo"}
    commands = [
        (
            "pysandbox pull",
            b.timed_rss(
                f"env PYSANDBOX_STATE={shlex.quote(str(state))} {b.q(BIN / 'pysandbox')} pull -q {name}", rss[0]
            ),
        ),
        (
            "skopeo copy docker:// oci:",
            b.timed_rss(f"skopeo copy -q --src-tls-verify=false docker://{name} oci:{b.q(oci)}:x", rss[1]),
        ),
    ]
    prepare = [f"rm -rf {b.q(state)}", f"rm -rf {b.q(oci)}"]
    if shutil.which("podman"):
        podman = (f"podman --root {b.q(podman_root / 'root')} --runroot {b.q(podman_root / 'run')} "
                  f"--storage-driver vfs pull -q --tls-verify=false docker://{name}")  # fmt: skip
        commands.append(("podman pull (vfs: also unpacks)", podman))
        prepare.append(f"rm -rf {b.q(podman_root)}")
    with b.machine_lock():
        measured, argv, note = b.measure(commands, prepare, W / "hyperfine.json", args.warmup, args.runs, rss)
    ours, skopeo = measured[0], measured[1]
    rows = [
        [m.name, b.fmt_s(m.median), f"± {m.stddev:.2f}", f"{blob_bytes / m.median / 1e6:.0f} MB/s",
         f"{m.peak_rss_kb // 1024} MiB" if m.peak_rss_kb else "-"]
        for m in measured
    ]  # fmt: skip
    verdict = "met" if ours.median <= skopeo.median * 1.05 else "NOT met"
    body = "\n".join([
        f"Pull of a {blob_bytes / 1e6:.0f} MB (compressed), 10-layer gzip image ({SPEC.files} files) from "
        f"docker-registry 2.8 on loopback into an empty store or folder each run; every blob's digest "
        f"verified by every tool. {note}.",
        "",
        b.table(["", "median (s)", "stddev", "throughput", "peak RSS"], rows),
        "",
        f"Goal (at or below skopeo's time, within 5% noise): **{verdict}** "
        f"({ours.median / skopeo.median:.2f}x skopeo).",
    ])  # fmt: skip
    print(body)
    if not args.no_append:
        b.append_results("Pull from a registry against skopeo and podman", body, [" ".join(argv)])


if __name__ == "__main__":
    sys.exit(main())
