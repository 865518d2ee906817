"""What an image says of its own lifecycle, as root and as an ordinary user: STOPSIGNAL (and
--stop-signal, --stop-timeout) is what `stop` sends; HEALTHCHECK (and --health-*) runs through
exec's path, under the container's confinement, and `ps` shows (healthy), (unhealthy) or
(health: starting); a check past its timeout is killed with what it started; a policy that
does not allow health checks refuses --health-cmd and does not run the image's; `inspect`
tells the image's digest, the verdict, the mounts and the limits."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pysbx.images.writer import NewImage, NewLayer, tar_from_directory, write_docker_archive
from tests.sandbox.harness import Sandbox, share, strict_variant, tool, wait_until

SECOND = 1_000_000_000
POLICY = "strict-unsigned.yaml"
SERVICE = "busybox-service.tar"
CONFINEMENT = "id; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp)' /proc/self/status; cat /proc/self/uid_map"


@pytest.fixture(scope="session")
def service_image(world: Path) -> Path:
    """busybox whose config says STOPSIGNAL SIGQUIT and HEALTHCHECK test -e /tmp/ready
    (every 0.2 s, unhealthy after 2 failures)."""
    image = world / SERVICE
    layers = [NewLayer(tar_from_directory(world / "rootfs"), "gzip", "COPY rootfs /")]
    config = {
        "User": "1000:1000",
        "Env": ["PATH=/bin"],
        "StopSignal": "SIGQUIT",
        "Healthcheck": {"Test": ["CMD-SHELL", "test -e /tmp/ready && echo fine"], "Interval": SECOND // 5,
                        "Retries": 2},
    }  # fmt: skip
    write_docker_archive(image, NewImage(layers, config), ["example/service:1"])
    share(world)
    return image


def detach(sandbox: Sandbox, world: Path, name: str, script: str, *flags: str, policy: str = POLICY,
           image: str = SERVICE) -> None:  # fmt: skip
    started = tool(sandbox, "run", "-d", "--name", name, *flags, "--policy", str(world / policy), str(world / image),
                   "sh", "-c", script)  # fmt: skip
    assert started.returncode == 0, started.stderr


def status(sandbox: Sandbox, name: str) -> str:
    rows = json.loads(tool(sandbox, "ps", "-a", "--format", "json").stdout)
    return next(row["status"] for row in rows if row["name"] == name)


def becomes(check: Callable[[], bool], seconds: float = 10) -> bool:
    return wait_until(check, seconds=seconds)


@pytest.mark.usefixtures("service_image")
def test_the_images_healthcheck_says_starting_healthy_then_unhealthy(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    named.append(name := f"health-{sandbox.mode}")
    detach(sandbox, world, name, "exec sleep 600")
    assert status(sandbox, name).endswith("(health: starting)")
    assert tool(sandbox, "exec", name, "touch", "/tmp/ready").returncode == 0
    assert becomes(lambda: status(sandbox, name).endswith("(healthy)")), status(sandbox, name)
    healthy = [row["name"] for row in json.loads(tool(sandbox, "ps", "--filter", "health=healthy", "--format",
                                                      "json").stdout)]  # fmt: skip
    assert name in healthy
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    assert inspected["health"]["status"] == "healthy" and inspected["health"]["log"][-1]["output"] == "fine\n"
    assert tool(sandbox, "exec", name, "rm", "/tmp/ready").returncode == 0
    assert becomes(lambda: status(sandbox, name).endswith("(unhealthy)")), status(sandbox, name)
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    assert inspected["health"]["failing_streak"] >= 2 and inspected["health"]["log"][-1]["exit_code"] == 1


@pytest.mark.usefixtures("service_image")
def test_a_health_check_runs_under_the_containers_confinement(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named.append(name := f"health-confined-{sandbox.mode}")
    detach(sandbox, world, name, f"{CONFINEMENT}; echo ready; exec sleep 600", "--health-cmd", CONFINEMENT,
           "--health-interval", "200ms")  # fmt: skip
    assert becomes(lambda: status(sandbox, name).endswith("(healthy)")), status(sandbox, name)
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    checked = inspected["health"]["log"][-1]["output"]
    assert checked == tool(sandbox, "logs", name).stdout.split("ready")[0]
    assert "NoNewPrivs:\t1" in checked and "Seccomp:\t2" in checked and "CapEff:\t0000000000000000" in checked


@pytest.mark.usefixtures("service_image")
def test_a_check_that_leaves_a_process_behind_is_scored_by_its_exit_code(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    """Found by review: what it left running held the output pipe open, and the check was
    scored a timeout although it had exited 0 (Docker scores its exit code)."""
    named.append(name := f"health-behind-{sandbox.mode}")
    detach(sandbox, world, name, "exec sleep 600", "--health-cmd", "sleep 30 & echo fine", "--health-timeout", "1s",
           "--health-interval", "1s", "--health-retries", "1")  # fmt: skip
    assert becomes(lambda: status(sandbox, name).endswith("(healthy)")), status(sandbox, name)
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    assert inspected["health"]["log"][-1]["exit_code"] == 0 and inspected["health"]["log"][-1]["output"] == "fine\n"


def test_a_check_past_its_timeout_is_killed_with_what_it_started(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    named.append(name := f"health-slow-{sandbox.mode}")
    # the next check starts 2 s after the first one was killed: ps below runs in between; the
    # check leaves a process its parent does not wait for (found by review: it escaped the kill)
    check = "sleep 97 & (exec sleep 96 &); sleep 98"
    detach(sandbox, world, name, "exec sleep 600", "--health-cmd", check, "--health-timeout", "300ms",
           "--health-interval", "2s", "--health-retries", "1")  # fmt: skip
    assert becomes(lambda: status(sandbox, name).endswith("(unhealthy)")), status(sandbox, name)
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    assert inspected["health"]["log"][-1] == {**inspected["health"]["log"][-1], "exit_code": -1,
                                              "output": "Health check exceeded timeout (0.3s)"}  # fmt: skip
    left = tool(sandbox, "exec", name, "ps", "-o", "args").stdout
    assert not {"sleep 98", "sleep 97", "sleep 96"} & set(left.splitlines()), left  # the check and all it started


@pytest.mark.usefixtures("service_image")
def test_a_policy_without_health_checks_refuses_the_flags_and_skips_the_images(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    named.append(name := f"health-off-{sandbox.mode}")
    policy = strict_variant(world, "no-health.yaml", ("    health: true", "    health: false")).name
    refused = tool(sandbox, "run", "-d", "--name", name, "--health-cmd", "true", "--policy", str(world / policy),
                   str(world / SERVICE), "sleep", "600")  # fmt: skip
    assert refused.returncode == 125 and "--health-cmd is refused" in refused.stderr, refused.stderr
    started = tool(sandbox, "run", "-d", "--name", name, "--policy", str(world / policy), str(world / SERVICE),
                   "sleep", "600")  # fmt: skip
    assert started.returncode == 0 and "HEALTHCHECK is not run" in started.stderr, started.stderr
    assert "health" not in status(sandbox, name)
    foreground = tool(sandbox, "run", "--rm", "--health-cmd", "true", "--policy", str(world / POLICY),
                      str(world / SERVICE), "true")  # fmt: skip
    assert foreground.returncode == 125 and "--health-cmd needs -d" in foreground.stderr
    conflict = tool(sandbox, "run", "-d", "--no-healthcheck", "--health-retries", "2", "--policy",
                    str(world / POLICY), str(world / SERVICE), "true")  # fmt: skip
    assert conflict.returncode == 125 and "conflicts" in conflict.stderr


@pytest.mark.usefixtures("service_image")
def test_stop_sends_the_images_stopsignal_or_the_flags(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named += [image_says := f"quit-{sandbox.mode}", flag_says := f"usr1-{sandbox.mode}"]
    script = "trap 'echo {0}; exit 0' {0}; trap 'echo TERM; exit 9' TERM; echo ready; while :; do sleep 0.1; done"
    detach(sandbox, world, image_says, script.format("QUIT"))
    detach(sandbox, world, flag_says, script.format("USR1"), "--stop-signal", "usr1", "--stop-timeout", "3")
    for name, said in ((image_says, "QUIT"), (flag_says, "USR1")):
        assert becomes(lambda name=name: "ready" in tool(sandbox, "logs", name).stdout)  # type: ignore[misc]
        assert tool(sandbox, "stop", name).returncode == 0
        assert tool(sandbox, "wait", name).stdout == "0\n" and tool(sandbox, "logs", name).stdout == f"ready\n{said}\n"
    (inspected,) = json.loads(tool(sandbox, "inspect", flag_says).stdout)
    assert inspected["stop_signal"] == "SIGUSR1" and inspected["stop_timeout"] == 3
    refused = tool(sandbox, "run", "-d", "--stop-signal", "ALRM", "--policy", str(world / POLICY),
                   str(world / SERVICE), "true")  # fmt: skip
    assert refused.returncode == 125 and "--stop-signal ALRM: pysandbox delivers" in refused.stderr


@pytest.mark.usefixtures("service_image")
def test_stop_waits_the_containers_own_stop_timeout(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named.append(name := f"stubborn-{sandbox.mode}")
    detach(sandbox, world, name, "trap '' QUIT TERM; while :; do sleep 0.1; done", "--stop-timeout", "1",
           "--no-healthcheck")  # fmt: skip
    started = time.monotonic()
    assert tool(sandbox, "stop", name).returncode == 0
    assert 1 <= time.monotonic() - started < 5 and tool(sandbox, "wait", name).stdout == "137\n"


def test_inspect_tells_the_image_the_verdict_and_the_confinement(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    named.append(name := f"inspected-{sandbox.mode}")
    detach(sandbox, world, name, "exec sleep 600", "--tmpfs", "/scratch:size=1m", image="busybox-app.tar")
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    assert inspected["image_digest"].startswith("sha256:") and len(inspected["image_digest"]) == 71
    assert inspected["verdict"] == "unsigned: the policy does not require a signature"
    confinement = inspected["confinement"]
    assert confinement["user"]["uid"] == 1000 and confinement["no_new_privileges"] is True
    assert {"type": "tmpfs", "destination": "/scratch", "size": 1 << 20} in confinement["mounts"]
    assert {"pids", "open_files"} <= {item["name"] for item in confinement["limits"]}
    assert inspected["stop_signal"] == "SIGTERM" and inspected["health"] is None


def test_health_flags_override_the_images_check_as_dockers_do() -> None:
    from pysbx.cli.runargs import parse
    from pysbx.sandbox.errors import SandboxError
    from pysbx.sandbox.health import health_check, parse_duration

    image = {"Test": ["CMD", "/bin/check", "--quick"], "Interval": 5 * SECOND, "Retries": 4}
    check = health_check(image, parse(["IMAGE"]))
    assert check is not None and check.as_dict() == {"test": ["/bin/check", "--quick"], "interval": 5.0,
                                                     "timeout": 30.0, "start_period": 0.0, "retries": 4}  # fmt: skip
    flagged = health_check(image, parse(["--health-cmd", "curl -f localhost", "--health-interval", "1m30s", "IMAGE"]))
    assert flagged is not None and flagged.test == ["/bin/sh", "-c", "curl -f localhost"] and flagged.interval == 90
    assert health_check({"Test": ["NONE"]}, parse(["IMAGE"])) is None
    assert health_check(image, parse(["--no-healthcheck", "IMAGE"])) is None
    assert parse_duration("500ms", "--health-timeout") == 0.5
    for bad in ("5", "1x", "s", "1m 30s"):
        with pytest.raises(SandboxError, match="expected a duration"):
            parse_duration(bad, "--health-interval")
    with pytest.raises(SandboxError, match="expected a Test"):
        health_check({"Test": ["CMD-SHELL"]}, parse(["IMAGE"]))


@pytest.mark.usefixtures("service_image")
def test_a_check_that_writes_without_end_fills_nothing(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    """Found by review: the check's output went to a file of which 4 KiB were read back."""
    named.append(name := f"health-flood-{sandbox.mode}")
    detach(sandbox, world, name, "exec sleep 600", "--health-cmd", "yes flooding-the-disk", "--health-timeout", "2s",
           "--health-interval", "100ms", "--health-retries", "1")  # fmt: skip
    assert becomes(lambda: status(sandbox, name).endswith("(unhealthy)")), status(sandbox, name)
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    folder = Path(inspected["folder"])
    written = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())
    assert written < 1 << 20, written
    assert inspected["health"]["log"][-1]["output"] == "Health check exceeded timeout (2s)"


def test_an_images_healthcheck_and_stopsignal_are_checked(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    """Found by review: a string Interval gave a traceback, a negative one a checker that
    died at once (health: starting forever); systemd images' SIGRTMIN+3 failed run -d."""
    named.append(name := f"odd-image-{sandbox.mode}")
    layers = [NewLayer(tar_from_directory(world / "rootfs"), "gzip", "COPY rootfs /")]
    for label, value in (("string", "abc"), ("negative", -5 * SECOND), ("huge", 10**30)):
        image = world / f"busybox-hc-{label}-{sandbox.mode}.tar"
        config = {"Env": ["PATH=/bin"], "Healthcheck": {"Test": ["CMD", "true"], "Interval": value}}
        write_docker_archive(image, NewImage(layers, config), [f"example/hc-{label}:1"])
        share(world)
        refused = tool(sandbox, "run", "-d", "--policy", str(world / POLICY), str(image), "true")
        assert refused.returncode == 125 and "the image's HEALTHCHECK: Interval" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    image = world / f"busybox-rtmin-{sandbox.mode}.tar"
    write_docker_archive(image, NewImage(layers, {"Env": ["PATH=/bin"], "StopSignal": "SIGRTMIN+3"}), ["example/rt:1"])
    share(world)
    started = tool(sandbox, "run", "-d", "--name", name, "--policy", str(world / POLICY), str(image), "sleep", "600")
    assert started.returncode == 0 and "stop sends SIGTERM" in started.stderr, started.stderr
    assert json.loads(tool(sandbox, "inspect", name).stdout)[0]["stop_signal"] == "SIGTERM"
