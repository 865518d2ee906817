"""The issue's "done when", end to end, as root and as an ordinary user: a busybox httpd runs
detached under strict and outlives `pysandbox run -d`, shows in `ps`, answers on the
container's loopback, streams its request log through `logs -f`, takes an `exec` under the
confinement of its own command (compared from inside: ids, CapEff, CapBnd, NoNewPrivs,
Seccomp, uid_map, cgroup), is restarted when it dies (--restart on-failure), stops within
its timeout, and leaves nothing after `rm`."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.sandbox.harness import Sandbox, processes_with, tool, tool_argv, wait_until

CONFINED = "grep -E '^(Uid|Gid|CapEff|CapBnd|NoNewPrivs|Seccomp)' /proc/{pid}/status; cat /proc/{pid}/uid_map /proc/{pid}/cgroup"
FETCH = "wget -qO- http://127.0.0.1:8080/"


def test_a_detached_web_service_lives_its_whole_life(sandbox: Sandbox, world: Path) -> None:
    name, marker = f"web-{sandbox.mode}", f"web-{os.getpid()}-{sandbox.mode}"
    tool(sandbox, "rm", "-f", name)
    serve = (f"mkdir -p /tmp/www && echo hello-{marker} > /tmp/www/index.html && echo serving && "
             f"exec httpd -f -v -p 127.0.0.1:8080 -h /tmp/www # {marker}")  # fmt: skip
    try:
        started = time.monotonic()
        ran = tool(sandbox, "run", "-d", "--name", name, "--restart", "on-failure:3", "--stop-timeout", "5",
                   "--policy", str(world / "strict-unsigned.yaml"), str(world / "busybox-app.tar"),
                   "sh", "-c", serve)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert time.monotonic() - started < 10  # `run -d` has exited: the service outlives it
        assert wait_until(lambda: tool(sandbox, "exec", name, "sh", "-c", FETCH).stdout == f"hello-{marker}\n")
        assert f"{name}" in tool(sandbox, "ps").stdout

        follower = subprocess.Popen([*tool_argv(sandbox), "logs", "-f", name], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd="/")  # fmt: skip
        time.sleep(0.5)
        tool(sandbox, "exec", name, "sh", "-c", f"{FETCH}never-there || true")
        assert wait_until(lambda: "response:404" in tool(sandbox, "logs", name).stderr)  # httpd -v: to stderr

        pids = tool(sandbox, "exec", name, "pidof", "httpd").stdout.split()
        assert len(pids) == 1, pids
        compared = tool(sandbox, "exec", name, "sh", "-c",
                        f"{CONFINED.format(pid=pids[0])}; echo ---; {CONFINED.format(pid='self')}")  # fmt: skip
        service, ours = compared.stdout.split("---\n")
        assert service == ours and "NoNewPrivs:\t1" in ours and "Seccomp:\t2" in ours, compared.stdout

        tool(sandbox, "exec", name, "kill", "-9", pids[0])  # the service dies: on-failure brings it back
        assert wait_until(lambda: json.loads(tool(sandbox, "inspect", name).stdout)[0]["status"].get("restarts") == 1)
        assert wait_until(lambda: tool(sandbox, "exec", name, "sh", "-c", FETCH).stdout == f"hello-{marker}\n", 10)

        began = time.monotonic()
        assert tool(sandbox, "stop", name).returncode == 0
        assert time.monotonic() - began < 5  # httpd ends at SIGTERM, well within --stop-timeout
        out, err = follower.communicate(timeout=30)  # logs -f ends with the container
        assert "serving" in out and "response:404" in err
        folder = Path(json.loads(tool(sandbox, "inspect", name).stdout)[0]["folder"])
        assert tool(sandbox, "rm", name).returncode == 0
        assert not folder.exists() and not processes_with(marker)
        assert name not in tool(sandbox, "ps", "-a").stdout
    finally:
        tool(sandbox, "rm", "-f", name)
