"""Benchmark: detached containers, pysandbox against rootless podman + runc on the same busybox
image (bench/run.py's inputs), and `exec` against `runc exec`, in one run on this machine:

- `run -d` until it returns (the container runs by then, for both);
- `exec CONTAINER /bin/true` into a running container (and `runc exec`, as root);
- `stop` of a container that exits on SIGTERM;
- `ps` with 50 containers running.

    .venv/bin/python bench/lifecycle.py [--runs N] [--no-append]

pysandbox runs under strict (unsigned), podman as PEERS.md says (vfs, cgroupfs, runc, no
network). Needs root (the ordinary user is bench/run.py's `benchuser`), hyperfine, podman,
runc, busybox-static. About 3 minutes on 2 cores. Goals from issue #15: every one faster than
podman; exec within 1.5x of runc exec."""

from __future__ import annotations

import json
import shlex
import subprocess

import benchlib as b
import run as startup

W = b.WORK / "lifecycle"
RUNC_ROOT = W / "runc-state"
# The stopped service waits on its sleep with `wait`, which a trapped TERM interrupts at once: with
# `sleep 0.1` in the foreground the shell runs its trap only when the sleep ends, so every stop
# measured up to 100 ms of the shell's own delay, set by the phase of its loop (podman's stop was
# bimodal, 44 to 154 ms, and ours a steady 113: session 9).
SERVICE = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"
CROWD = 50


def ours(prefix: str, *args: str) -> str:
    return f"{prefix} {startup.PYSANDBOX} {shlex.join(args)}".strip()


def theirs(prefix: str, *args: str) -> str:
    return f"{prefix} {startup.PODMAN} {shlex.join(args)}".strip()


def rows(user: startup.User) -> list[tuple[str, str, str]]:
    """(name, command, prepare) for each measured command."""
    image, policy = str(startup.IMAGE), str(startup.POLICY)
    as_user = shlex.join(user.prefix())
    engines = [("pysandbox", ours, "", "root", ("--policy", policy, image)),
               ("pysandbox", ours, as_user, user.name, ("--policy", policy, image)),
               ("podman", theirs, as_user, user.name, ("--network=none", startup.IMAGE_REF))]  # fmt: skip
    found = []
    for tool, call, prefix, who, tail in engines:
        start_stoppable = call(prefix, "run", "-d", "--name", "bench-s", *tail, "sh", "-c", SERVICE)
        found += [
            (f"{tool} run -d ({who})", call(prefix, "run", "-d", "--name", "bench-d", *tail, "sleep", "1000"),
             call(prefix, "rm", "-f", "bench-d")),
            (f"{tool} exec true ({who})", call(prefix, "exec", "bench-x", "/bin/true"), ""),
            (f"{tool} stop ({who})", call(prefix, "stop", "bench-s"),
             f"{call(prefix, 'rm', '-f', 'bench-s')} >/dev/null; {start_stoppable}"),
            (f"{tool} ps, {CROWD} running ({who})", call(prefix, "ps"), ""),
        ]  # fmt: skip
    found.append(("runc exec true (root)", f"runc --root {RUNC_ROOT} exec bench-x /bin/true", ""))
    return found


def populate(user: startup.User, log: list[str]) -> None:
    """The running containers the rows need: bench-x to exec into, and a crowd of 50 for ps."""
    image, policy = str(startup.IMAGE), str(startup.POLICY)
    for prefix in ("", shlex.join(user.prefix())):
        names = ["bench-x", *(f"bench-crowd-{index}" for index in range(CROWD - 1))]
        for name in names:
            command = ours(prefix, "run", "-d", "--name", name, "--policy", policy, image, "sleep", "1000")
            subprocess.run(command, shell=True, check=True, capture_output=True, cwd=b.REPO)
        log.append(
            f"{CROWD} x {ours(prefix, 'run', '-d', '--name', 'NAME', '--policy', policy, image, 'sleep', '1000')}"
        )
    as_user = shlex.join(user.prefix())
    startup.run_logged(["sh", "-c", f"{theirs(as_user, 'load', '-i', str(startup.IMAGE))} >/dev/null"], log)
    for index in range(CROWD):
        name = "bench-x" if index == 0 else f"bench-crowd-{index}"
        command = theirs(as_user, "run", "-d", "--name", name, "--network=none", startup.IMAGE_REF, "sleep", "1000")
        subprocess.run(command, shell=True, check=True, capture_output=True)
    crowd = theirs(as_user, "run", "-d", "--name", "NAME", "--network=none", startup.IMAGE_REF, "sleep", "1000")
    log.append(f"{CROWD} x {crowd}")
    runc_bundle(log)


def runc_bundle(log: list[str]) -> None:
    """bench/run.py's default bundle, running `sleep 1000` detached as bench-x."""
    bundle = W / "runc-bundle"
    subprocess.run(["rm", "-rf", str(bundle)], check=True)
    subprocess.run(["cp", "-a", str(startup.BUNDLE_DEFAULT), str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["args"] = ["/bin/sleep", "1000"]
    (bundle / "config.json").write_text(json.dumps(config))
    startup.run_logged(["runc", "--root", str(RUNC_ROOT), "run", "-d", "--bundle", str(bundle), "bench-x"], log,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def clean(user: startup.User) -> None:
    for prefix in ("", shlex.join(user.prefix())):
        listed = subprocess.run(ours(prefix, "ps", "-aq"), shell=True, capture_output=True, text=True).stdout.split()
        if listed:
            subprocess.run(ours(prefix, "rm", "-f", *listed), shell=True, capture_output=True)
    as_user = shlex.join(user.prefix())
    subprocess.run(f"{theirs(as_user, 'rm', '-af')}", shell=True, capture_output=True)
    subprocess.run(["runc", "--root", str(RUNC_ROOT), "delete", "-f", "bench-x"], capture_output=True)


def main() -> None:
    args = b.runs_arguments(__doc__)
    log: list[str] = []
    with b.machine_lock():
        user = startup.prepared_user(log)
        W.mkdir(parents=True, exist_ok=True)
        clean(user)
        try:
            populate(user, log)
            measured_rows = rows(user)
            prepares = [f"{p or 'true'} >/dev/null 2>&1; true" for _, _, p in measured_rows]  # one per command
            measured, argv, note = b.measure([(n, c) for n, c, _ in measured_rows], prepares,
                                             W / "lifecycle.json", 1, args.runs)  # fmt: skip
        finally:
            clean(user)
    body = report(measured, note)
    print(body)
    if not args.no_append:
        b.append_results("Detached containers: run -d, exec, stop, ps against podman and runc exec", body,
                         [*log, shlex.join(argv)])  # fmt: skip


def report(measured: list[b.Measured], note: str) -> str:
    table = b.table(["command", "median ms", "mean ± sd ms", "runs"],
                    [[m.name, f"{m.median * 1000:.1f}", f"{m.mean * 1000:.1f} ± {m.stddev * 1000:.1f}",
                      str(len(m.times))] for m in measured])  # fmt: skip
    by_name = {m.name: m.median for m in measured}
    user = next(m.name.rsplit("(", 1)[1].rstrip(")") for m in measured if m.name.startswith("podman run -d"))
    goals = []
    for what in ("run -d", "exec true", "stop", f"ps, {CROWD} running"):
        mine, peer = by_name[f"pysandbox {what} ({user})"], by_name[f"podman {what} ({user})"]
        goals.append(f"- {what} ({user}): pysandbox / podman = {mine / peer:.2f}x: goal (faster) "
                     f"{'met' if mine < peer else '**missed**'}.")  # fmt: skip
    ratio = by_name["pysandbox exec true (root)"] / by_name["runc exec true (root)"]
    verdict = "met" if ratio <= 1.5 else "**missed**"
    goals.append(f"- exec (root): pysandbox / runc exec = {ratio:.2f}x: goal (<= 1.5x) {verdict}.")
    return "\n".join([f"Load: {note}.", "", table, "", *goals])


if __name__ == "__main__":
    main()
