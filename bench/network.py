"""Benchmark: rootless networking, pysandbox against rootless podman on the same busybox image
(bench/run.py's inputs), as the ordinary user bench/run.py makes, in one run on this machine:

- start-up: `run --rm IMAGE true` with `--network none` and with each engine (the engine's
  added start-up is the difference);
- throughput host -> container through `-p`: 1 GiB sent from the host to 127.0.0.1:PORT,
  received by busybox `nc -l` in the container (the same receiver for both);
- connection latency through `-p`: a new connection and an HTTP GET of a small page from
  busybox `httpd`, one after the other, median of 300;
- a bridge network (`network create benchnet`, netavark and aardvark-dns for both): the
  start-up of a container joining it while another holds it (the keeper, podman's rootless
  netns, already up), -p through rootlessport (both), and container -> container throughput
  by name: 512 MiB from busybox `httpd` to busybox `nc` in another container, timed inside
  the client from /proc/uptime (10 ms steps), median of 3.

    .venv/bin/python bench/network.py [--runs N] [--no-append]

pysandbox runs under baseline (unsigned), which allows pasta and slirp4netns; podman as
PEERS.md says (vfs, cgroupfs, runc). Debian 12's podman is 4.3, which has no pasta (4.4
added it): its rootless engine is slirp4netns with its own port handler (rootlessport), so
the peer for both of ours is podman with slirp4netns. Goals (issue #16): at least podman's
throughput, start-up overhead at most podman's. About 4 minutes on 2 cores."""

from __future__ import annotations

import shlex
import socket
import statistics
import subprocess
import time

import benchlib as b
import run as startup

W = b.WORK / "network"
POLICY = W / "baseline-unsigned.yaml"
SEND_BYTES = 1 << 30
LATENCY_REQUESTS = 300
ENGINES = ("pasta", "slirp4netns")
NETWORK = "benchnet"  # a bridge network of each tool's, made by the bench
BETWEEN_MIB = 512
SERVE_BIG = (
    f"mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/big bs=1M count={BETWEEN_MIB} 2>/dev/null && "
    "exec httpd -f -p 8000 -h /tmp/www"
)
FETCH_BIG = (
    "read a x < /proc/uptime; printf 'GET /big HTTP/1.0\\r\\n\\r\\n' | nc {host} 8000 | wc -c; "
    "read b x < /proc/uptime; echo $a $b"
)


def ours(user: startup.User, *args: str) -> list[str]:
    return [*user.prefix(), str(startup.PYSANDBOX), *args]


def theirs(user: startup.User, *args: str) -> list[str]:
    return [*user.prefix(), *shlex.split(startup.PODMAN), *args]


def start_rows(user: startup.User) -> list[tuple[str, str]]:
    """(name, command) for the start-up rows."""
    image = str(startup.IMAGE)
    found = [(f"pysandbox --network {mode}", shlex.join(ours(user, "run", "--rm", "--policy", str(POLICY),
              "--network", mode, image, "true"))) for mode in ("none", *ENGINES)]  # fmt: skip
    found += [(f"podman --network {mode}", shlex.join(theirs(user, "run", "--rm", "--network", mode,
               startup.IMAGE_REF, "true"))) for mode in ("none", "slirp4netns", NETWORK)]  # fmt: skip
    found.insert(3, (f"pysandbox --network {NETWORK}", shlex.join(ours(user, "run", "--rm", "--policy", str(POLICY),
                     "--network", NETWORK, image, "true"))))  # fmt: skip
    return found


def make_networks(user: startup.User, log: list[str]) -> None:
    """benchnet for each tool: made anew, or kept when a container of an interrupted run still
    names it."""
    for command in (ours(user, "network", "rm", NETWORK), theirs(user, "network", "rm", "-f", NETWORK)):
        subprocess.run(command, capture_output=True)
    for command in (ours(user, "network", "create", NETWORK), theirs(user, "network", "create", NETWORK)):
        made = subprocess.run(command, capture_output=True, text=True)
        if made.returncode != 0 and "already exists" not in made.stderr:
            raise SystemExit(f"{shlex.join(command)}: {made.stderr.strip()}")
        log.append(shlex.join(command))


def started(tool: str, user: startup.User, mode: str, script: str, *flags: str) -> str:
    """A detached container on `mode` running `script`: its id."""
    if tool == "pysandbox":
        command = ours(user, "run", "-d", "--network", mode, *flags, "--policy", str(POLICY), str(startup.IMAGE),
                       "sh", "-c", script)  # fmt: skip
    else:
        command = theirs(user, "run", "-d", "--network", mode, *flags, startup.IMAGE_REF, "sh", "-c", script)
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]


def between(tool: str, user: startup.User) -> list[float]:
    """MiB/s of BETWEEN_MIB from one container's httpd to another's nc, by name, three times."""
    server = started(tool, user, NETWORK, SERVE_BIG, "--name", f"bench-big-{tool}")
    rates = []
    try:
        time.sleep(3)  # the file is written, httpd listens
        for _ in range(3):
            script = FETCH_BIG.format(host=f"bench-big-{tool}")
            if tool == "pysandbox":
                command = ours(user, "run", "--rm", "--network", NETWORK, "--policy", str(POLICY),
                               str(startup.IMAGE), "sh", "-c", script)  # fmt: skip
            else:
                command = theirs(user, "run", "--rm", "--network", NETWORK, startup.IMAGE_REF, "sh", "-c", script)
            words = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
            received, begun, ended = int(words[0]), float(words[1]), float(words[2])
            assert received > BETWEEN_MIB << 20, words
            rates.append(BETWEEN_MIB / (ended - begun))
    finally:
        remove(tool, user, server)
    return rates


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def detached(tool: str, user: startup.User, mode: str, port: int, script: str) -> list[str]:
    """The command that starts a detached container publishing 127.0.0.1:port -> 5000."""
    flags = ["run", "-d", "--network", mode, "-p", f"127.0.0.1:{port}:5000"]
    if tool == "pysandbox":
        return ours(user, *flags, "--policy", str(POLICY), str(startup.IMAGE), "sh", "-c", script)
    return theirs(user, *flags, startup.IMAGE_REF, "sh", "-c", script)


def remove(tool: str, user: startup.User, container: str) -> None:
    command = ours(user, "rm", "-f", container) if tool == "pysandbox" else theirs(user, "rm", "-f", container)
    subprocess.run(command, capture_output=True)


def connect(port: int, seconds: float = 10.0) -> socket.socket:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def throughput(tool: str, user: startup.User, mode: str) -> float:
    """MiB/s of SEND_BYTES from the host into the container's `nc -l`, until it has read all."""
    port = free_port()
    started = subprocess.run(detached(tool, user, mode, port, "nc -l -p 5000 > /dev/null"), capture_output=True,
                             text=True, check=True)  # fmt: skip
    container = started.stdout.strip().splitlines()[-1]
    try:
        time.sleep(0.3)  # nc listens
        block = bytes(1 << 20)
        with connect(port) as stream:
            begun = time.monotonic()
            for _ in range(SEND_BYTES // len(block)):
                stream.sendall(block)
            stream.shutdown(socket.SHUT_WR)
            stream.recv(1)  # the receiver closes once it has read everything
            elapsed = time.monotonic() - begun
    finally:
        remove(tool, user, container)
    return SEND_BYTES / (1 << 20) / elapsed


def latency(tool: str, user: startup.User, mode: str) -> float:
    """Median ms of a new connection plus an HTTP GET of a small page, through -p."""
    port = free_port()
    serve = "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p 5000 -h /tmp/www"
    started = subprocess.run(detached(tool, user, mode, port, serve), capture_output=True, text=True, check=True)
    container = started.stdout.strip().splitlines()[-1]
    request = f"GET / HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    times = []
    try:
        connect(port).close()
        for _ in range(LATENCY_REQUESTS):
            begun = time.monotonic()
            with connect(port) as stream:
                stream.sendall(request)
                while stream.recv(4096):
                    pass
            times.append(time.monotonic() - begun)
    finally:
        remove(tool, user, container)
    return statistics.median(times) * 1000


def main() -> None:
    args = b.runs_arguments(__doc__)
    log: list[str] = []
    with b.machine_lock():
        user = startup.prepared_user(log)
        W.mkdir(parents=True, exist_ok=True)
        baseline = (b.REPO / "policies/baseline.yaml").read_text().replace("  required: true", "  required: false")
        POLICY.write_text(baseline)
        POLICY.chmod(0o644)
        log.append(f"sed 's/  required: true/  required: false/' policies/baseline.yaml > {b.rel(POLICY)}")
        startup.run_logged(["sh", "-c", shlex.join(theirs(user, "load", "-i", str(startup.IMAGE))) + " >/dev/null"],
                           log)  # fmt: skip
        make_networks(user, log)
        holders = [(tool, started(tool, user, NETWORK, "sleep 100000")) for tool in ("pysandbox", "podman")]
        try:
            rows = start_rows(user)
            measured, argv, note = b.measure(rows, "true", W / "start.json", 1, args.runs)
        finally:
            for tool, holder in holders:
                remove(tool, user, holder)
        peers = [("pysandbox", mode) for mode in (*ENGINES, NETWORK)] + [("podman", "slirp4netns"), ("podman", NETWORK)]
        b.wait_for_quiet()
        flows = {(tool, mode): [throughput(tool, user, mode) for _ in range(3)] for tool, mode in peers}
        delays = {(tool, mode): latency(tool, user, mode) for tool, mode in peers}
        across = {tool: between(tool, user) for tool in ("pysandbox", "podman")}
    body = report(measured, note, flows, delays, across)
    print(body)
    if not args.no_append:
        receivers = [shlex.join(detached(tool, user, mode, 0, "nc -l -p 5000 > /dev/null")) for tool, mode in peers]
        b.append_results("Rootless networking: start-up, -p throughput and latency against podman", body,
                         [*log, shlex.join(argv), *receivers])  # fmt: skip


def report(
    measured: list[b.Measured],
    note: str,
    flows: dict[tuple[str, str], list[float]],
    delays: dict[tuple[str, str], float],
    across: dict[str, list[float]],
) -> str:
    by_name = {m.name: m.median * 1000 for m in measured}
    start = b.table(["command", "median ms", "mean ± sd ms", "runs"],
                    [[m.name, f"{m.median * 1000:.1f}", f"{m.mean * 1000:.1f} ± {m.stddev * 1000:.1f}",
                      str(len(m.times))] for m in measured])  # fmt: skip
    transfer = b.table(["engine", "host -> container MiB/s (median of 3)", "runs", "GET through -p, median ms"],
                       [[f"{tool} {mode}", f"{statistics.median(flows[tool, mode]):.0f}",
                         ", ".join(f"{rate:.0f}" for rate in flows[tool, mode]), f"{delays[tool, mode]:.2f}"]
                        for tool, mode in flows])  # fmt: skip
    podman_overhead = by_name["podman --network slirp4netns"] - by_name["podman --network none"]
    podman_rate = statistics.median(flows["podman", "slirp4netns"])
    goals = []
    for mode in ENGINES:
        overhead = by_name[f"pysandbox --network {mode}"] - by_name["pysandbox --network none"]
        rate = statistics.median(flows["pysandbox", mode])
        started = "met" if overhead <= podman_overhead else "**missed**"
        flowed = "met" if rate >= podman_rate else "**missed**"
        goals.append(f"- {mode}: start-up overhead {overhead:.1f} ms against podman slirp4netns's "
                     f"{podman_overhead:.1f} ms: goal (at most podman's) {started}; throughput {rate:.0f} MiB/s "
                     f"against podman's {podman_rate:.0f}: goal (at least podman's) {flowed}.")  # fmt: skip
    bridged = b.table([f"container -> container on {NETWORK}, by name", "MiB/s (median of 3)", "runs"],
                      [[tool, f"{statistics.median(rates):.0f}", ", ".join(f"{rate:.0f}" for rate in rates)]
                       for tool, rates in across.items()])  # fmt: skip
    overhead = by_name[f"pysandbox --network {NETWORK}"] - by_name["pysandbox --network none"]
    podman_bridge = by_name[f"podman --network {NETWORK}"] - by_name["podman --network none"]
    ours_rate, their_rate = (statistics.median(across[tool]) for tool in ("pysandbox", "podman"))
    port_rate = statistics.median(flows["pysandbox", NETWORK])
    their_port = statistics.median(flows["podman", NETWORK])
    goals.append(f"- {NETWORK} (bridge): start-up overhead {overhead:.1f} ms against podman's {podman_bridge:.1f} ms: "
                 f"{'met' if overhead <= podman_bridge else '**missed**'}; container -> container {ours_rate:.0f} "
                 f"MiB/s against podman's {their_rate:.0f}: {'met' if ours_rate >= their_rate else '**missed**'}; "
                 f"-p {port_rate:.0f} MiB/s against podman's {their_port:.0f}: "
                 f"{'met' if port_rate >= their_port else '**missed**'}.")  # fmt: skip
    return "\n".join([f"Load: {note}.", "", start, "", transfer, "", bridged, "", *goals])


if __name__ == "__main__":
    main()
