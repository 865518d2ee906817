"""What a detached container is made of, beyond its RunSpec: its record (container.json:
what ps, inspect, stop, rm -v and `generate systemd` read), the rules saved beside its spec
for exec and the health checker, and its monitor's options (log bounds, restart policy),
made by `run -d` and rebuilt by `start` from the record."""

from __future__ import annotations

import os
import sys
from typing import Any

from pysbx.sandbox.containers import Container
from pysbx.sandbox.errors import SandboxError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pysbx.cli.runargs import RunArgs
    from pysbx.sandbox.monitor import DetachOptions, LogBounds
    from pysbx.sandbox.planrecord import Plan
    from pysbx.sandbox.runner import RunSpec

DEFAULT_LOG_SIZE = 10 << 20  # a record written before log bounds were kept


def container_record(
    container_id: str, name: str, spec: RunSpec, args: RunArgs, plan: Plan, bounds: LogBounds
) -> dict[str, object]:
    """container.json: what the container is, for ps and inspect (and stop's signal, the
    volumes volume rm must not take from it, the anonymous ones rm -v removes)."""
    from pysbx.sandbox.containers import STOP_TIMEOUT
    from pysbx.sandbox.times import now
    from pysbx.sandbox.volumes import volume_names

    image = plan.image
    return {"id": container_id, "name": name, "image": args.image, "policy": args.policy,
            "image_digest": image.digest, "verdict": image.verdict, "command": spec.argv, "created": now(),
            "auto_remove": args.rm, "restart": args.restart or "no",
            "stop_signal": stop_signal(args.stop_signal, image.stop_signal),
            "stop_timeout": STOP_TIMEOUT if args.stop_timeout is None else args.stop_timeout,
            "volumes": volume_names(args.volume), "anonymous_volumes": args.anonymous_volumes,
            "tty": args.tty, "interactive": args.interactive, "detach_keys": detach_keys(args.detach_keys),
            "run": {"argv": args.given, "cwd": os.getcwd()},
            "log": {"max_size": bounds.max_size, "max_file": bounds.max_file},
            "network": spec.network, "ports": [port.as_dict() for port in spec.ports]}  # fmt: skip


def detach_keys(keys: str | None) -> str:
    """--detach-keys as given (checked), or Docker's ctrl-p,ctrl-q."""
    from pysbx.sandbox.attach import DEFAULT_DETACH_KEYS, parse_detach_keys

    parse_detach_keys(keys or DEFAULT_DETACH_KEYS)
    return keys if keys is not None else DEFAULT_DETACH_KEYS


def stop_signal(flag: str | None, image: str) -> str:
    """--stop-signal, else the image's STOPSIGNAL, else SIGTERM, as a name `stop` delivers
    through the monitor. One the monitor does not forward is refused from the flag; from
    the image (SIGRTMIN+3 of systemd images), it is said, and SIGTERM is used."""
    from pysbx.sandbox.lifecycle import signal_name

    if flag is not None:
        return signal_name(flag, "--stop-signal")
    try:
        return signal_name(image or "SIGTERM", "the image's STOPSIGNAL")
    except SandboxError as error:
        print(f"pysandbox: note: {error}; stop sends SIGTERM (or give --stop-signal)", file=sys.stderr)
        return "SIGTERM"


def detach_rules(args: RunArgs, plan: Plan) -> dict[str, Any]:
    """What the monitor saves beside the spec for exec and the health checker (the policy's
    word on exec and exec -u with its lines, the user it pins, the image's passwd and group),
    and the health check, when there is one the policy lets run."""
    from pysbx.sandbox.health import health_check

    lifecycle, where = plan.confinement.lifecycle, plan.confinement.lifecycle["where"]
    check = health_check(plan.image.healthcheck, args)
    if check is not None and not lifecycle["health"]:  # a --health-cmd was refused by check_lifecycle
        print(f"pysandbox: note: the image's HEALTHCHECK is not run: the policy does not allow health checks "
              f"({where['health']})", file=sys.stderr)  # fmt: skip
        check = None
    return {
        "exec": {"allowed": bool(lifecycle["exec"]), "where": str(where["exec"])},
        "exec_user": {"allowed": bool(lifecycle["exec_user"]), "where": str(where["exec_user"])},
        "user_pin": {"user": plan.confinement.user, "where": plan.confinement.user_where},
        "etc": list(plan.etc_texts),
        "health": None if check is None else check.as_dict(),
        "network": plan.confinement.network_rules,  # network connect's check (sandbox.netrules)
    }


def log_bounds(options: list[str], lifecycle: dict[str, Any]) -> LogBounds:
    """--log-opt max-size=SIZE,max-file=N (json-file's keys) as the monitor's LogBounds,
    within the policy's bounds (max-size defaults to the policy's, max-file to 1)."""
    from pysbx.policies.values import format_size, parse_size
    from pysbx.sandbox.errors import Refused
    from pysbx.sandbox.monitor import LogBounds

    values = {"max-size": str(lifecycle["log_max_size"]), "max-file": "1"}
    for option in options:
        key, equals, value = option.partition("=")
        if key not in values or not equals:
            raise SandboxError(f"--log-opt {option}: expected max-size=SIZE or max-file=N")
        values[key] = value
    size = parse_size(values["max-size"])
    if size is None or size < 4096 or not values["max-file"].isdigit() or int(values["max-file"]) < 1:
        raise SandboxError(f"--log-opt: expected max-size of at least 4k and max-file of at least 1, "
                           f"got {values['max-size']} and {values['max-file']}")  # fmt: skip
    where = lifecycle["where"]
    if size > lifecycle["log_max_size"]:
        limit = format_size(lifecycle["log_max_size"])
        raise Refused(f"--log-opt max-size={values['max-size']} is refused: the policy allows {limit} "
                      f"({where['log_max_size']})")  # fmt: skip
    if int(values["max-file"]) > lifecycle["log_max_file"]:
        raise Refused(f"--log-opt max-file={values['max-file']} is refused: the policy allows "
                      f"{lifecycle['log_max_file']} ({where['log_max_file']})")  # fmt: skip
    return LogBounds(size, int(values["max-file"]))


def options_from_record(container: Container, extra: dict[str, Any]) -> DetachOptions:
    """`start`: the monitor's options as `run -d` recorded them (`extra`: the saved rules)."""
    from pysbx.sandbox.monitor import DetachOptions, LogBounds
    from pysbx.sandbox.restart import parse_restart

    log = container.record.get("log")
    log = log if isinstance(log, dict) else {}
    bounds = LogBounds(int(log.get("max_size", DEFAULT_LOG_SIZE)), int(log.get("max_file", 1)))
    restart = parse_restart(str(container.record.get("restart", "no")))
    return DetachOptions(bounds, restart, False, container.name, extra)
