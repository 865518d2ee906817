"""Benchmark: `pysandbox image unpack` against `tar -x` of the same layer blobs and
`umoci unpack --rootless`, on a ~500 MB, ~20,000-file, 10-layer synthetic image, with gzip
and with uncompressed layers. Warm page cache; medians of 3 runs after 1 warm-up (hyperfine).

    .venv/bin/python bench/unpack.py [--runs N] [--warmup N] [--keep-fs]

The unpack targets live on a fresh, journaled ext4 filesystem on a loop device in
bench/work/fs/ (root only; otherwise bench/work/run/ is used with a warning): the root
filesystem of the benchmark VMs is ext4 *without* a journal, where creating files shortly
after many were deleted costs O(recently deleted inodes) per file in the kernel
(ext4 `find_inode_bit` -> `recently_deleted`), which made the same `tar -x` take 1.2 s or 12 s
depending on what the previous run deleted."""

from __future__ import annotations

import argparse
import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import benchlib as b

SPEC = b.ImageSpec(
    name="unpack",
    seed=20240501,
    total_bytes=500_000_000,
    files=20_000,
    layers=10,
    large_files=40,
    symlinks=500,
    hardlinks=50,
    whiteouts=30,
)
GOAL = 1.0  # ours within 1.0x of tar (the speed issue; the first unpack issue asked 1.5x)
FS_IMAGE = b.WORK / "fs" / "unpack-ext4.img"
FS_MOUNT = b.WORK / "fs" / "mnt"
FS_SIZE = "8G"


class Targets:
    """Where the unpacks land: a fresh ext4 on a loop device if we may mount, else bench/work/run."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.loop: str | None = None
        self.note = ""
        if os.geteuid() == 0 and self._mount():
            self.root = FS_MOUNT
            self.note = (
                f"Unpack targets on a fresh ext4 (with journal; `mkfs.ext4 -E lazy_itable_init=0`) of "
                f"{FS_SIZE} on a loop device (`losetup --direct-io=on`) backed by bench/work/fs/."
            )
        else:
            self.root = b.WORK / "run"
            self.root.mkdir(parents=True, exist_ok=True)
            self.note = (
                "WARNING: unpack targets on the root filesystem (could not mount a loop ext4); on an "
                "ext4 without journal, timings depend on how many inodes the previous runs deleted."
            )
            print(self.note, file=sys.stderr)

    def _mount(self) -> bool:
        FS_MOUNT.mkdir(parents=True, exist_ok=True)
        self._unmount_quietly()
        try:
            FS_IMAGE.unlink(missing_ok=True)
            subprocess.run(["truncate", "-s", FS_SIZE, str(FS_IMAGE)], check=True)
            subprocess.run(
                ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(FS_IMAGE)],
                check=True,
            )
            self.loop = subprocess.run(
                ["losetup", "--find", "--show", "--direct-io=on", str(FS_IMAGE)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            subprocess.run(["mount", self.loop, str(FS_MOUNT)], check=True)
            return True
        except (OSError, subprocess.CalledProcessError) as error:
            print(f"cannot mount a loop ext4: {error}", file=sys.stderr)
            self.close()
            return False

    def _unmount_quietly(self) -> None:
        if os.path.ismount(FS_MOUNT):
            subprocess.run(["umount", str(FS_MOUNT)], check=False)
        listed = subprocess.run(["losetup", "-j", str(FS_IMAGE)], capture_output=True, text=True, check=False)
        for line in listed.stdout.splitlines():
            subprocess.run(["losetup", "-d", line.split(":")[0]], check=False)

    def close(self) -> None:
        if self.keep:
            return
        if os.path.ismount(FS_MOUNT):
            subprocess.run(["umount", str(FS_MOUNT)], check=False)
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], check=False)
        FS_IMAGE.unlink(missing_ok=True)


def tree_summary(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """path -> (type, size, mode, link target), for comparing unpacked trees."""
    out: dict[str, tuple[str, int, int, str]] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
            link = os.readlink(path) if kind == "l" else ""
            size = st.st_size if kind == "f" else 0
            out[os.path.relpath(path, root)] = (kind, size, stat.S_IMODE(st.st_mode) if kind != "l" else 0, link)
    return out


def compare(a: dict[str, tuple[str, int, int, str]], b_: dict[str, tuple[str, int, int, str]]) -> str:
    only_a = set(a) - set(b_)
    only_b = set(b_) - set(a)
    differ = [p for p in set(a) & set(b_) if a[p] != b_[p]]
    if not (only_a or only_b or differ):
        return "identical (paths, types, sizes, modes, link targets)"
    sample = sorted(differ)[:3]
    return f"{len(only_a)} paths only in the first, {len(only_b)} only in the second, {len(differ)} differ" + (
        f" (e.g. {sample[0]}: {a[sample[0]]} vs {b_[sample[0]]})" if sample else ""
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--keep-fs", action="store_true", help="leave the loop ext4 mounted afterwards")
    args = parser.parse_args()
    started = time.monotonic()

    image = b.generate(SPEC)
    out = b.WORK / "results"
    out.mkdir(parents=True, exist_ok=True)
    targets = Targets(args.keep_fs)
    argv_lines: list[str] = []
    sections: list[str] = []
    summary_rows: list[list[str]] = []
    checks: list[str] = []
    quiet_notes: list[str] = []
    try:
        for compression in ("gzip", "none"):
            layout = image.layout(compression)
            ref = f"{b.rel(layout)}:{b.TAG}"
            ours_t = targets.root / "ours"
            tar_t = targets.root / "tar"
            umoci_t = targets.root / "umoci"
            rss = {name: out / f"unpack-{compression}-{name}.rss" for name in ("ours", "tar", "umoci")}
            flag = "-xzf" if compression == "gzip" else "-xf"
            blobs = " ".join(b.q(p) for p in image.layer_blobs(compression))
            tar_script = f"mkdir {b.q(tar_t)} && for l in {blobs}; do tar {flag} $l -C {b.q(tar_t)}; done"
            ours_cmd = f".venv/bin/pysandbox image unpack {b.q(ref)} {b.q(ours_t)}"
            umoci_cmd = f"umoci unpack --rootless --image {b.q(ref)} {b.q(umoci_t)}"
            commands = [
                ("pysandbox image unpack", b.timed_rss(ours_cmd, rss["ours"])),
                (f"tar {flag} (each layer, in order)", b.timed_rss(f"sh -c {shlex.quote(tar_script)}", rss["tar"])),
                ("umoci unpack --rootless", b.timed_rss(umoci_cmd, rss["umoci"])),
            ]
            prepare = [f"rm -rf {b.q(t)} && sync" for t in (ours_t, tar_t, umoci_t)]
            measured, argv, note = b.measure(
                commands,
                prepare,
                out / f"unpack-{compression}.json",
                args.warmup,
                args.runs,
                rss=dict(enumerate(rss.values())),
                interleave=True,
            )
            quiet_notes.append(f"{compression}: {note}")
            argv_lines.extend(argv)
            ours, tar, umoci = measured
            blob_mb = image.stats[f"blob_bytes_{compression}"] / 1e6
            rows = [
                [
                    m.name,
                    b.fmt_s(m.median),
                    " / ".join(b.fmt_s(t) for t in m.times),
                    f"{m.median / tar.median:.2f}x",
                    f"{(m.peak_rss_kb or 0) / 1024:.0f} MiB" if m.peak_rss_kb else "?",
                ]
                for m in measured
            ]
            sections.append(
                f"### {compression} layers ({blob_mb:.0f} MB of blobs)\n\n"
                + b.table(["command", "median s", "runs s", "vs tar", "peak RSS"], rows)
            )
            ratio = ours.median / tar.median
            summary_rows.append(
                [
                    compression,
                    b.fmt_s(ours.median),
                    b.fmt_s(tar.median),
                    b.fmt_s(umoci.median),
                    f"**{ratio:.2f}x**",
                    "met" if ratio <= GOAL else "MISSED",
                    f"{ours.median / umoci.median:.2f}x",
                ]
            )
            # The last run of each command leaves its tree: ours and umoci must agree exactly.
            ours_tree = tree_summary(ours_t)
            umoci_tree = tree_summary(umoci_t / "rootfs")
            tar_tree = tree_summary(tar_t)
            checks.append(
                f"- {compression}: ours vs umoci rootfs: {compare(ours_tree, umoci_tree)}; "
                f"{len(ours_tree)} paths in ours, {len(tar_tree)} in tar's (which keeps `.wh.` files and "
                "whited-out paths)."
            )
        subprocess.run(["rm", "-rf", *(str(targets.root / name) for name in ("ours", "tar", "umoci"))], check=False)
    finally:
        targets.close()

    # A floor for the CLI's process start-up (imports), measured separately.
    startup, argv = b.hyperfine(
        [("pysandbox image unpack --help", ".venv/bin/pysandbox image unpack --help")],
        "",
        out / "unpack-startup.json",
        1,
        5,
    )
    argv_lines.append(shlex.join(argv))

    s = image.stats
    body = "\n".join(
        [
            f"Image: {s['files']} file entries ({s['file_bytes'] / 1e6:.0f} MB of file data), "
            f"{s['dirs']} directory entries, {s['symlinks']} symlinks, {s['hardlinks']} hard links, "
            f"{s['whiteouts']} whiteouts + 1 opaque directory, in {SPEC.layers} layers; "
            f"{s['tar_bytes'] / 1e6:.0f} MB of tar; gzip blobs {s['blob_bytes_gzip'] / 1e6:.0f} MB "
            f"(seed {SPEC.seed}, bench/work/{SPEC.key()}).  ",
            "Warm page cache (blobs just written or read; dropping caches is not reliable here), "
            f"median of {args.runs} rounds after {args.warmup} warm-up round, the three commands in turn in "
            "each round, the order reversed every other round (benchlib.interleaved_shell); `rm -rf` of the "
            "command's target and `sync` before each run (not timed). Writes stay in the page cache: no "
            "fsync by any tool.  ",
            f"{targets.note}  ",
            "`tar` runs as root (so it keeps owners and modes, like ours), does not apply "
            "whiteouts (it leaves `.wh.` files) and does not verify digests; `tar -xzf` runs gzip as "
            "a second process (two cores). `umoci` verifies blob digests and also hashes every "
            "unpacked file to write its mtree manifest.  ",
            f"Process start-up floor: `pysandbox image unpack --help` takes {b.fmt_s(startup[0].median)} s.",
            "",
            f"Goal: ours within {GOAL}x of tar.",
            "",
            b.table(["layers", "ours s", "tar s", "umoci s", "ours/tar", "goal", "ours/umoci"], summary_rows),
            "",
            *sections[:1],
            "",
            *sections[1:],
            "",
            "Checks on the trees the last runs left:",
            *checks,
            "",
            "Machine load:",
            *(f"- {note}" for note in quiet_notes),
        ]
    )
    print()
    print(body)
    b.append_results("Unpack: pysandbox vs tar -x vs umoci", body, argv_lines)
    print(f"\n(appended to bench/RESULTS.md; {time.monotonic() - started:.0f} s in all)", file=sys.stderr)


if __name__ == "__main__":
    with b.machine_lock():  # generation and measurement both: never beside another benchmark
        main()
