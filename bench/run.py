"""Benchmark: start-to-exit time of `/bin/true` in one busybox rootfs under `pysandbox run`
(warm: plan and layers cached; cold: an empty cache every run), bubblewrap, runc and rootless
podman, as root and as an ordinary user, in one run on this machine; plus `python -X importtime`
of the `pysandbox run` paths, to show where start-up goes.

    .venv/bin/python bench/run.py [--runs N] [--cold-runs N] [--podman-runs N] [--no-append]

Needs root (it creates the ordinary user `benchuser` and runs the rootless variants through
`runuser`), hyperfine, bubblewrap, runc, busybox-static and podman (installed with apt-get when
missing; skipped, with the reason, when that fails or it cannot run). Everything it makes lives
in bench/work/startup/ (and the user's home). About 2-4 minutes on 2 cores.

Goals from the issue: warm start no slower than runc, at least 5x faster than podman, cold
start (first run, unpack included) under 300 ms."""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import benchlib as b

W = b.WORK / "startup"
ROOTFS = W / "rootfs"
IMAGE = W / "busybox.tar"
IMAGE_REF = "localhost/pysandbox-bench:busybox"
POLICY = W / "strict-unsigned.yaml"
PYCACHE = W / "pycache"
STATE_WARM = W / "state-warm"  # root's cache for the warm runs
STATE_COLD = W / "state-cold"  # root's cache for the cold runs, emptied before each
RUNC_STATE = W / "runc-state"
BUNDLE_DEFAULT = W / "runc-default"
BUNDLE_STRICT = W / "runc-strict"
BUNDLE_ROOTLESS = W / "runc-rootless"
RESULTS_DIR = W / "results"
PY = b.REPO / ".venv" / "bin" / "python"
PYSANDBOX = b.REPO / ".venv" / "bin" / "pysandbox"

USER = "benchuser"
GOAL_COLD = 0.300
GOAL_PODMAN = 5.0


# -- the ordinary user ------------------------------------------------------------------------
@dataclass
class User:
    name: str
    uid: int
    home: Path

    @property
    def runtime_dir(self) -> Path:
        return Path(f"/run/user/{self.uid}")

    @property
    def cold_state(self) -> Path:
        return self.home / "pysandbox-cold"

    @property
    def export_dir(self) -> Path:
        return self.home / "startup-bench"

    def env(self) -> dict[str, str]:
        """What a login session would give: HOME and XDG_RUNTIME_DIR (pysandbox and podman
        keep per-container state there). No PYSANDBOX_STATE: the cache is ~/.cache/pysandbox."""
        return {"HOME": str(self.home), "XDG_RUNTIME_DIR": str(self.runtime_dir), "USER": self.name}

    def prefix(self, extra: dict[str, str] | None = None) -> list[str]:
        settings = {**self.env(), **(extra or {})}
        return [
            "runuser", "-u", self.name, "--", "env", "-u", "PYSANDBOX_STATE", "-u", "XDG_CACHE_HOME",
            *[f"{k}={v}" for k, v in settings.items()],
        ]  # fmt: skip


def ensure_user(setup_log: list[str]) -> User:
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        run_logged(["useradd", "-m", "-s", "/bin/sh", USER], setup_log)
        entry = pwd.getpwnam(USER)
    user = User(USER, entry.pw_uid, Path(entry.pw_dir))
    subuid = Path("/etc/subuid").read_text()
    if not any(line.startswith(f"{USER}:") for line in subuid.splitlines()):
        # useradd adds ranges on its own when login.defs says so; otherwise take one after the others.
        starts = [
            int(line.split(":")[1]) + int(line.split(":")[2]) for line in subuid.splitlines() if line.count(":") == 2
        ]
        base = max([165536, *starts])
        run_logged(
            ["usermod", "--add-subuids", f"{base}-{base + 65535}", "--add-subgids", f"{base}-{base + 65535}", USER],
            setup_log,
        )
    # A login session's runtime dir (there is no systemd-logind here to make it).
    user.runtime_dir.mkdir(parents=True, exist_ok=True)
    os.chown(user.runtime_dir, entry.pw_uid, entry.pw_gid)
    os.chmod(user.runtime_dir, 0o700)
    for path in (user.export_dir,):
        path.mkdir(exist_ok=True)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return user


# -- setup ------------------------------------------------------------------------------------
def run_logged(argv: list[str], log: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    log.append(
        shlex.join(argv) if "cwd" not in kwargs else f"(cd {b.q(Path(str(kwargs['cwd'])))} && {shlex.join(argv)})"
    )
    print("$ " + log[-1], file=sys.stderr, flush=True)
    return subprocess.run(argv, check=True, text=True, cwd=kwargs.pop("cwd", b.REPO), **kwargs)  # type: ignore[call-overload]


def prepared_user(log: list[str]) -> User:
    """The ordinary user of the benches, with bench/run.py's inputs (image, policy) built."""
    user = ensure_user(log)
    build_inputs(user, log)
    return user


def build_inputs(user: User, log: list[str]) -> None:
    """The rootfs, the image, the unsigned copy of strict, and the runc bundles."""
    shutil.rmtree(W, ignore_errors=True)  # everything is rebuilt; the image is deterministic
    W.mkdir(parents=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    run_logged(["sh", "examples/busybox/make-rootfs.sh", b.rel(ROOTFS)], log)
    run_logged(
        [b.rel(PYSANDBOX), "image", "build", b.rel(ROOTFS), "-o", b.rel(IMAGE), "--format", "docker-archive",
         "--user", "1000:1000", "--cmd", "/bin/sh", "--tag", IMAGE_REF],
        log,
    )  # fmt: skip
    strict = (b.REPO / "policies" / "strict.yaml").read_text()
    before, signing, after = strict.partition("\nsigning:\n")
    assert signing, "policies/strict.yaml has no signing: section"
    body, sep, rest = after.partition("\n\n")
    assert "  required: true" in body, "policies/strict.yaml: signing.required is not true"
    POLICY.write_text(before + signing + body.replace("  required: true", "  required: false", 1) + sep + rest)
    log.append(f"sed '/^signing:/,/^$/s/^  required: true/  required: false/' policies/strict.yaml > {b.rel(POLICY)}")

    # runc: the default `runc spec` (as root: no user namespace, no seccomp) ...
    for bundle in (BUNDLE_DEFAULT, BUNDLE_STRICT, BUNDLE_ROOTLESS):
        shutil.rmtree(bundle, ignore_errors=True)
        bundle.mkdir()
    run_logged(["runc", "spec"], log, cwd=BUNDLE_DEFAULT)
    _edit_config(BUNDLE_DEFAULT / "config.json")
    # ... the strict policy exported to OCI (user namespace to 100000, seccomp, caps, limits) ...
    exported = subprocess.run(
        [str(PYSANDBOX), "policy", "export", str(POLICY), "--to", "oci"], check=True, capture_output=True, text=True
    ).stdout
    log.append(f"{b.rel(PYSANDBOX)} policy export {b.rel(POLICY)} --to oci > {b.rel(BUNDLE_STRICT)}/config.json")
    (BUNDLE_STRICT / "config.json").write_text(exported)
    _edit_config(BUNDLE_STRICT / "config.json")
    # ... and rootless (`runc spec --rootless` as the user: its own uid mapped to 0, no resources).
    os.chown(BUNDLE_ROOTLESS, user.uid, -1)
    run_logged([*user.prefix(), "runc", "spec", "--rootless"], log, cwd=BUNDLE_ROOTLESS)
    _edit_config(BUNDLE_ROOTLESS / "config.json")
    log.append(f'# in each config.json: process.args = ["/bin/true"], process.terminal = false, root.path = {ROOTFS}')
    # Everyone may read the inputs (the user's runs use the same files).
    for path in [W, *W.rglob("*")]:
        if path.is_relative_to(STATE_WARM) or path.is_relative_to(STATE_COLD):
            continue
        mode = path.lstat().st_mode
        if not path.is_symlink():
            os.chmod(path, mode | 0o444 | (0o111 if path.is_dir() else 0))


def _edit_config(path: Path) -> None:
    config = json.loads(path.read_text())
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    config["root"]["path"] = str(ROOTFS)
    path.write_text(json.dumps(config, indent=2))


def ensure_podman(log: list[str]) -> str | None:
    """None if podman is usable, else the reason it is not."""
    if shutil.which("podman") is None:
        try:
            run_logged(["apt-get", "install", "-y", "podman"], log, capture_output=True)
        except subprocess.CalledProcessError as error:
            return (
                f"`apt-get install -y podman` failed (exit {error.returncode}): {(error.stderr or '').strip()[-300:]}"
            )
        if shutil.which("podman") is None:
            return "`apt-get install -y podman` succeeded but no podman binary is on PATH"
    return None


# -- commands ---------------------------------------------------------------------------------
def pysandbox_run() -> str:
    return shlex.join([b.rel(PYSANDBOX), "run", "--rm", "--policy", b.rel(POLICY), b.rel(IMAGE), "/bin/true"])


def bwrap() -> str:
    return shlex.join(
        ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", b.rel(ROOTFS), "/", "--proc", "/proc",
         "--dev", "/dev", "/bin/true"]
    )  # fmt: skip


def runc(bundle: Path, state: Path, container: str) -> str:
    return shlex.join(["runc", "--root", str(state), "run", "--bundle", b.rel(bundle), container])


PODMAN = "podman --storage-driver=vfs --cgroup-manager=cgroupfs --runtime=runc"


def podman_run() -> str:
    return f"{PODMAN} run --network=none --rm {IMAGE_REF} /bin/true"


def base_env() -> dict[str, str]:
    """Fresh bytecode for every module (see prime_bytecode), never written while measuring."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYSANDBOX_STATE", "XDG_CACHE_HOME")}
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check(
    command: str, env: dict[str, str], user: User | None = None, extra: dict[str, str] | None = None
) -> str | None:
    """Run a command once; None if it exits 0, else what went wrong."""
    argv = shlex.split(command)
    if user is not None:
        argv = user.prefix({"PYTHONPYCACHEPREFIX": str(PYCACHE), **(extra or {})}) + argv
        run_env = env
    else:
        run_env = {**env, **(extra or {})}
    done = subprocess.run(argv, cwd=b.REPO, env=run_env, capture_output=True, text=True)
    if done.returncode == 0:
        return None
    return f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-400:]}"


def prime_bytecode(user: User) -> str:
    """The checkout is being edited by others while we measure (some modules' .pyc are stale,
    and PYTHONDONTWRITEBYTECODE=1 is set here, so those would be compiled on every run). Use a
    private PYTHONPYCACHEPREFIX and fill it once, as an installed package would have it."""
    PYCACHE.mkdir(parents=True, exist_ok=True)
    os.chmod(PYCACHE, 0o777)
    env = base_env()
    del env["PYTHONDONTWRITEBYTECODE"]
    cold_user = {"PYSANDBOX_STATE": str(user.cold_state)}
    for extra in (cold_user, {}):
        shutil.rmtree(user.cold_state, ignore_errors=True)
        argv = [*user.prefix({"PYTHONPYCACHEPREFIX": str(PYCACHE), **extra}), *shlex.split(pysandbox_run())]
        subprocess.run(argv, cwd=b.REPO, env=env, capture_output=True)
    for state in (STATE_COLD, STATE_WARM):
        subprocess.run(
            shlex.split(pysandbox_run()), cwd=b.REPO, env={**env, "PYSANDBOX_STATE": str(state)}, capture_output=True
        )
    shutil.rmtree(STATE_COLD, ignore_errors=True)
    shutil.rmtree(user.cold_state, ignore_errors=True)
    return (
        f"PYTHONPYCACHEPREFIX={b.rel(PYCACHE)} (primed by one cold and one warm run per user), "
        "PYTHONDONTWRITEBYTECODE=1"
    )


# -- measuring --------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    command: str
    who: str  # "root" or the user's name
    kind: str  # "pysandbox-warm", "pysandbox-cold", "runc", "bwrap", "podman", "python"
    result: b.Measured | None = None
    failure: str | None = None


@dataclass
class Group:
    title: str
    rows: list[Row]
    warmup: int
    runs: int
    user: User | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    prepare: str | None = None
    argv_line: str = ""
    load_note: str = ""


def run_group(group: Group, started: float, budget: float, groups_left: int) -> None:
    live = [row for row in group.rows if row.failure is None]
    if not live:
        return
    name = group.title.lower().replace(" ", "-").replace(",", "")
    export = (group.user.export_dir if group.user is not None else RESULTS_DIR) / f"{name}.json"
    hf = ["hyperfine", "-N", "--warmup", str(group.warmup), "--runs", str(group.runs), "--style", "basic"]
    if group.prepare:
        hf += ["--prepare", group.prepare]
    hf += ["--export-json", str(export)]
    for row in live:
        hf += ["-n", row.name, row.command]
    env = base_env()
    if group.user is not None:
        argv = group.user.prefix({"PYTHONPYCACHEPREFIX": str(PYCACHE), **group.extra_env}) + hf
        shown = argv
    else:
        env.update(group.extra_env)
        argv = hf
        shown = ["env", f"PYTHONPYCACHEPREFIX={PYCACHE}", *[f"{k}={v}" for k, v in group.extra_env.items()], *hf]
    group.argv_line = shlex.join(shown)

    best: tuple[float, dict[str, object], str] | None = None
    for attempt in (1, 2):
        # Other sessions benchmark on this machine too: wait for quiet, but leave time for the rest.
        remaining = budget - (time.monotonic() - started)
        quiet = b.wait_for_quiet(max_wait=max(5.0, min(90.0, remaining / (groups_left + 1))))
        print("$ " + group.argv_line, file=sys.stderr, flush=True)
        with b.ForeignCpu() as foreign:
            subprocess.run(argv, cwd=b.REPO, env=env, check=True, stdout=sys.stderr)
        data = json.loads(export.read_text())
        share = foreign.foreign / max(1e-9, foreign.wall * (os.cpu_count() or 1))
        note = f"attempt {attempt}: {quiet}; {foreign.note()} ({share:.0%} of the machine)"
        if best is None or share < best[0]:
            best = (share, data, note)
        # Measure once more only if disturbed and there is time for it.
        if share <= 0.10 or attempt == 2 or time.monotonic() - started > budget * 0.6:
            break
        print(f"other processes took {share:.0%} of the CPU: measuring again", file=sys.stderr, flush=True)
    assert best is not None
    share, data, note = best
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(data, indent=2))
    group.load_note = note + ("; CONTAMINATED (over 10%)" if share > 0.10 else "")
    for row, result in zip(live, data["results"], strict=True):  # type: ignore[call-overload]
        row.result = b.Measured(
            row.name, row.command, result["median"], result["mean"], result["stddev"] or 0.0, result["times"]
        )


# -- import time ------------------------------------------------------------------------------
@dataclass
class Imported:
    name: str
    depth: int
    self_us: float
    cumulative_us: float


def importtime(extra_env: dict[str, str], repeats: int, fresh: Path | None) -> tuple[list[Imported], float, Path]:
    """Median (over `repeats` runs) self and cumulative import time of every module the
    command imports; also the total (sum of the top-level cumulatives). Keeps the last raw
    output in bench/work/startup/."""
    samples: dict[tuple[str, int], list[tuple[int, int]]] = {}
    order: list[tuple[str, int]] = []
    totals = []
    label = "cold" if fresh else "warm"
    raw = W / f"importtime-{label}.txt"
    for _ in range(repeats):
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        env = {**base_env(), **extra_env, "PYTHONPROFILEIMPORTTIME": "1"}
        with raw.open("w") as err:
            subprocess.run(shlex.split(pysandbox_run()), cwd=b.REPO, env=env, stderr=err, check=True)
        total = 0
        for line in raw.read_text().splitlines():
            if not line.startswith("import time:") or "[us]" in line:
                continue
            self_us, cumulative, name = line[len("import time:") :].split("|")
            depth = (len(name) - len(name.lstrip(" "))) // 2
            key = (name.strip(), depth)
            if key not in samples:
                samples[key] = []
                order.append(key)
            samples[key].append((int(self_us), int(cumulative)))
            if depth == 0:
                total += int(cumulative)
        totals.append(total)
    modules = [
        Imported(
            name,
            depth,
            statistics.median(s for s, _ in samples[(name, depth)]),
            statistics.median(c for _, c in samples[(name, depth)]),
        )
        for name, depth in order
    ]
    return modules, statistics.median(totals), raw


def import_table(modules: list[Imported], top: int) -> str:
    ranked = sorted(modules, key=lambda m: m.cumulative_us, reverse=True)[:top]
    rows = [
        [f"`{'· ' * m.depth}{m.name}`", str(m.depth), f"{m.cumulative_us / 1000:.1f}", f"{m.self_us / 1000:.1f}"]
        for m in ranked
    ]
    return b.table(["module (· = nesting)", "depth", "cumulative ms", "self ms"], rows)


def versions() -> str:
    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            return (done.stdout or done.stderr).splitlines()[0].strip()
        except (OSError, IndexError):
            return f"{argv[0]}: not available"

    return "; ".join(
        [
            first_line(["bwrap", "--version"]),
            first_line(["runc", "--version"]),
            first_line(["podman", "--version"]),
            first_line(["hyperfine", "--version"]),
            first_line([str(PY), "--version"]),
        ]
    )


# -- report -----------------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cold-runs", type=int, default=20)
    parser.add_argument("--podman-runs", type=int, default=20)
    parser.add_argument("--importtime-repeats", type=int, default=7)
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; waiting for quiet shrinks to fit")
    parser.add_argument("--no-append", action="store_true", help="print the section, do not append it")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print(
            "bench/run.py must run as root (it measures as root and, through runuser, as an ordinary user)",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    os.chdir(b.REPO)
    setup_log: list[str] = []
    user = ensure_user(setup_log)
    build_inputs(user, setup_log)
    podman_problem = ensure_podman(setup_log)
    bytecode_note = prime_bytecode(user)
    env = base_env()

    # The rows, each checked once (which also fills the warm caches).
    root_warm = {"PYSANDBOX_STATE": str(STATE_WARM)}
    root_cold = {"PYSANDBOX_STATE": str(STATE_COLD)}
    user_cold = {"PYSANDBOX_STATE": str(user.cold_state)}
    RUNC_STATE.mkdir(parents=True, exist_ok=True)
    user_runc_state = user.runtime_dir / "runc-bench"
    rows_root = [
        Row("pysandbox run, warm (root)", pysandbox_run(), "root", "pysandbox-warm"),
        Row("runc run, `runc spec` (root)", runc(BUNDLE_DEFAULT, RUNC_STATE, "bench-default"), "root", "runc"),
        Row(
            "runc run, strict exported to OCI (root)",
            runc(BUNDLE_STRICT, RUNC_STATE, "bench-strict"),
            "root",
            "runc-strict",
        ),
        Row("bwrap (root)", bwrap(), "root", "bwrap"),
        Row("python -c pass (root)", f"{b.rel(PY)} -c pass", "root", "python-pass"),
        Row(
            "python: import the warm path only (root)",
            f"{b.rel(PY)} -c 'import pysbx.cli.entry, pysbx.cli.run_cmd, pysbx.sandbox.warm, pysbx.sandbox.runner'",
            "root",
            "python-imports",
        ),
    ]
    row_root_cold = Row("pysandbox run, cold (root)", pysandbox_run(), "root", "pysandbox-cold")
    rows_user = [
        Row(f"pysandbox run, warm ({USER})", pysandbox_run(), USER, "pysandbox-warm"),
        Row(
            f"runc run, `runc spec --rootless` ({USER})",
            runc(BUNDLE_ROOTLESS, user_runc_state, "bench-rootless"),
            USER,
            "runc",
        ),
        Row(f"bwrap ({USER})", bwrap(), USER, "bwrap"),
    ]
    row_user_cold = Row(f"pysandbox run, cold ({USER})", pysandbox_run(), USER, "pysandbox-cold")
    row_podman = Row(f"podman run --rm, rootless ({USER})", podman_run(), USER, "podman")

    for row in rows_root:
        row.failure = check(row.command, env, extra=root_warm)
    shutil.rmtree(STATE_COLD, ignore_errors=True)
    row_root_cold.failure = check(row_root_cold.command, env, extra=root_cold)
    for row in rows_user:
        row.failure = check(row.command, env, user)
    shutil.rmtree(user.cold_state, ignore_errors=True)
    row_user_cold.failure = check(row_user_cold.command, env, user, user_cold)
    if podman_problem is None:
        try:
            run_logged([*user.prefix(), *shlex.split(f"{PODMAN} load -i {IMAGE}")], setup_log, capture_output=True)
            row_podman.failure = check(row_podman.command, env, user)
        except subprocess.CalledProcessError as error:
            row_podman.failure = f"podman load failed (exit {error.returncode}): {error.stderr.strip()[-300:]}"
    else:
        row_podman.failure = podman_problem
    for row in [*rows_root, row_root_cold, *rows_user, row_user_cold, row_podman]:
        if row.failure:
            print(f"SKIPPED {row.name}: {row.failure}", file=sys.stderr)

    def emptied(path: Path) -> str:
        return f"sh -c 'chmod -R u+w {path} 2>/dev/null; rm -rf {path}'"

    groups = [
        Group("root warm", rows_root, args.warmup, args.runs, None, root_warm),
        Group("root cold", [row_root_cold], 1, args.cold_runs, None, root_cold, emptied(STATE_COLD)),
        Group("user warm", rows_user, args.warmup, args.runs, user),
        Group("user cold", [row_user_cold], 1, args.cold_runs, user, user_cold, emptied(user.cold_state)),
        Group("user podman", [row_podman], args.warmup, args.podman_runs, user),
    ]
    for index, group in enumerate(groups):
        run_group(group, started, args.budget, len(groups) - index)

    # Import time of both paths, as root (the user's imports are the same modules).
    warm_modules, warm_total, warm_raw = importtime(root_warm, args.importtime_repeats, None)
    cold_modules, cold_total, cold_raw = importtime(root_cold, args.importtime_repeats, STATE_COLD)
    shutil.rmtree(STATE_COLD, ignore_errors=True)
    heavy = ("typer", "click", "rich", "yaml", "sigstore", "pyseccomp", "seccomp", "images", "policies", "cryptography")
    warm_heavy = sorted({m.name for m in warm_modules if m.name.removeprefix("pysbx.").split(".")[0] in heavy})

    # -- the table
    by_kind = {(row.who, row.kind): row for g in groups for row in g.rows}
    runc_root = by_kind.get(("root", "runc"))
    runc_user = by_kind.get((USER, "runc"))

    def reference(row: Row) -> Row | None:
        return runc_root if row.who == "root" else runc_user

    table_rows = []
    for group in groups:
        for row in group.rows:
            if row.result is None:
                table_rows.append([row.name, "skipped", row.failure or "not measured", "", "", ""])
                continue
            ref = reference(row)
            ratio = f"{row.result.median / ref.result.median:.2f}x" if ref and ref.result else "n/a"
            table_rows.append(
                [
                    row.name,
                    ms(row.result.median),
                    f"{ms(row.result.mean)} ± {ms(row.result.stddev)}",
                    f"{ms(min(row.result.times))}",
                    str(len(row.result.times)),
                    ratio,
                ]
            )
    table = b.table(["command", "median ms", "mean ± sd ms", "min ms", "runs", "median ÷ runc (same user)"], table_rows)

    # -- the goals
    def med(who: str, kind: str) -> float | None:
        row = by_kind.get((who, kind))
        return row.result.median if row and row.result else None

    goals = []
    for who, ref_name in (("root", "`runc spec`, as root"), (USER, "`runc spec --rootless`, as the user")):
        warm, ref = med(who, "pysandbox-warm"), med(who, "runc")
        if warm is None or ref is None:
            goals.append(f"- Warm start no slower than runc ({who}): not measured.")
        else:
            verdict = "met" if warm <= ref else "**missed**"
            goals.append(
                f"- Warm start no slower than runc ({ref_name}): {ms(warm)} ms vs {ms(ref)} ms = "
                f"{warm / ref:.2f}x runc — goal {verdict}" + ("." if warm <= ref else f" ({ms(warm - ref)} ms over).")
            )
    podman, warm_user, warm_root = med(USER, "podman"), med(USER, "pysandbox-warm"), med("root", "pysandbox-warm")
    if podman is None or warm_user is None:
        goals.append(f"- At least {GOAL_PODMAN:.0f}x faster than podman: not measured ({row_podman.failure}).")
    else:
        speedup = podman / warm_user
        verdict = "met" if speedup >= GOAL_PODMAN else "**missed**"
        extra = f"; pysandbox as root: {podman / warm_root:.2f}x" if warm_root else ""
        goals.append(
            f"- At least {GOAL_PODMAN:.0f}x faster than podman (both rootless, warm): podman {ms(podman)} ms / "
            f"pysandbox {ms(warm_user)} ms = {speedup:.2f}x — goal {verdict}{extra}."
        )
    for who in ("root", USER):
        cold = med(who, "pysandbox-cold")
        if cold is None:
            goals.append(f"- Cold start under {GOAL_COLD * 1000:.0f} ms ({who}): not measured.")
        else:
            verdict = "met" if cold < GOAL_COLD else "**missed**"
            goals.append(
                f"- Cold start under {GOAL_COLD * 1000:.0f} ms ({who}, empty cache, unpack and seccomp compile "
                f"included): median {ms(cold)} ms — goal {verdict}."
            )

    python_pass = by_kind.get(("root", "python-pass"))
    imports_only = by_kind.get(("root", "python-imports"))
    breakdown = ""
    if python_pass and python_pass.result and imports_only and imports_only.result and warm_root:
        interp = python_pass.result.median
        imports = imports_only.result.median - interp
        breakdown = (
            f"Warm path as root, split with the rows above: interpreter start (`python -c pass`) {ms(interp)} ms, "
            f"importing the warm path's modules {ms(imports)} ms, the rest (reading the plan, namespaces, "
            f"mounts, seccomp, fork/exec, waiting, `--rm`) {ms(warm_root - imports_only.result.median)} ms."
        )

    strict_runc = med("root", "runc-strict")
    if warm_root is not None and strict_runc is not None:
        goals.insert(
            1,
            f"  (As root against runc with the exported strict config: {ms(warm_root)} ms vs {ms(strict_runc)} ms = "
            f"{warm_root / strict_runc:.2f}x.)",
        )
    image_bytes = IMAGE.stat().st_size
    files = sum(1 for _ in ROOTFS.rglob("*"))
    body = [
        f"`/bin/true` in the busybox example rootfs ({files} entries; the image is one gzip layer, "
        f"{image_bytes / 1e6:.1f} MB docker-archive), start to exit, hyperfine `-N` (no shell). "
        f"Root rows run from root; `{USER}` rows run hyperfine itself as the ordinary user `{USER}` "
        f"(uid {user.uid}, subordinate ids from /etc/subuid) through `runuser`, with HOME and "
        f"XDG_RUNTIME_DIR={user.runtime_dir} set as a login would. Warm: {args.warmup} warm-ups and "
        f"{args.runs} runs (podman: {args.podman_runs}); pysandbox warm = plan and rootfs already cached "
        f"(root: PYSANDBOX_STATE={b.rel(STATE_WARM)}; {USER}: ~/.cache/pysandbox). Cold: PYSANDBOX_STATE "
        f"emptied by `--prepare` before each of {args.cold_runs} runs (1 warm-up), so each run parses the "
        "policy, reads and unpacks the image, compiles the seccomp filter and writes the plan.",
        "",
        f"Versions: {versions()}.",
        "",
        f"Policy: {b.rel(POLICY)} = policies/strict.yaml with `signing.required: false` (signatures are not "
        "verified yet): 7 namespaces, container root mapped to an unprivileged id, overlay root "
        "(read-only) over the cached rootfs, no capabilities, no_new_privs, the strict seccomp filter, "
        "rlimits; the process runs as the image's user 1000. runc `runc spec` as root has no user "
        "namespace and no seccomp; the exported strict config has a user namespace (to 100000), "
        "the strict seccomp profile, no capabilities and cgroup limits; bwrap has no seccomp, no overlay "
        "and keeps ids. Python bytecode: " + bytecode_note + ".",
        "",
        table,
        "",
        *goals,
        "",
        breakdown,
        "",
        "Machine load while measuring:",
        "",
        *[f"- {g.title}: {g.load_note or 'not measured'}" for g in groups],
        "",
        f"`python -X importtime` of the warm path (root, plan cached; median of {args.importtime_repeats} runs; "
        f"all imports together {warm_total / 1000:.1f} ms under the profiler, which inflates them). "
        f"Top 15 by cumulative time (a module's time includes the modules nested under it):",
        "",
        import_table(warm_modules, 15),
        "",
        "Warm path imports of the heavy packages (typer, click, rich, yaml, sigstore, pyseccomp, images, "
        f"policies, cryptography): {', '.join(warm_heavy) if warm_heavy else 'none'}.",
        "",
        f"Cold path (empty cache; median of {args.importtime_repeats}; all imports {cold_total / 1000:.1f} ms), "
        "top 15:",
        "",
        import_table(cold_modules, 15),
        "",
        f"Raw output of the last run of each: {b.rel(warm_raw)}, {b.rel(cold_raw)}.",
    ]
    argv_lines = [
        "# setup",
        *setup_log,
        "# measuring (bench/work/startup/results/*.json)",
        *[g.argv_line for g in groups if g.argv_line],
        "# import time",
        f"env PYTHONPYCACHEPREFIX={PYCACHE} PYSANDBOX_STATE={STATE_WARM} PYTHONPROFILEIMPORTTIME=1 "
        f"{pysandbox_run()} 2> {b.rel(warm_raw)}",
        f"rm -rf {b.rel(STATE_COLD)}; env PYTHONPYCACHEPREFIX={PYCACHE} PYSANDBOX_STATE={STATE_COLD} "
        f"PYTHONPROFILEIMPORTTIME=1 {pysandbox_run()} 2> {b.rel(cold_raw)}",
    ]
    text = "\n".join(body)
    print(text)
    print(f"\n(total {time.monotonic() - started:.0f} s)", file=sys.stderr)
    if not args.no_append:
        b.append_results("pysandbox run vs bwrap, runc, podman: /bin/true start-up", text, argv_lines)
        print(f"appended to {b.rel(b.RESULTS)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
