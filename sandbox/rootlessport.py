"""Published ports of a container on a bridge network, through podman's rootlessport (Debian's
package podman), which podman starts for the same purpose for its rootless bridge networks:
it listens on the host's ports and, from a child in the container's network namespace,
connects each connection to the container's address there. Nothing of ours moves packets,
and no firewall rule is added anywhere.

It enters the container's network namespace, which a process of an ordinary user may do only
from inside the keeper's user namespace (sandbox.netkeeper), so it starts there (root's stays
in the host's: it may then publish a port below 1024 where the policy allows). It is told the
ports on its standard input, says it is ready on one descriptor and ends when another closes;
the parent-death signal ends it with the monitor."""

from __future__ import annotations

import json
import os
import select
import shutil
import time

from pysbx.sandbox import network
from pysbx.sandbox.errors import SandboxError

PROGRAM = "/usr/lib/podman/rootlessport"
STOP_SECONDS = 2.0  # it closes its listeners and its child within 2 ms here


class Forwarder:
    """A running rootlessport, and the scratch folder it keeps its sockets in."""

    def __init__(self, engine: network.Engine, scratch: str) -> None:
        self.engine, self.scratch = engine, scratch

    def stop(self) -> None:
        """Close its exit descriptor and let it end (it removes its sockets), SIGKILL when it
        does not; its ports are free once this returns."""
        if self.engine.exit_w >= 0:
            os.close(self.engine.exit_w)
            self.engine.exit_w = -1
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline:
            try:
                if os.waitpid(self.engine.pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break
            time.sleep(0.002)
        else:
            self.engine.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)


def start(ports: list[network.Published], netns: int, address: str, userns: int, folder: str) -> Forwarder:
    """Publish `ports` to `address` in the network namespace `netns` (a descriptor), from
    inside the user namespace `userns` (-1: this one); its log in the container's `folder`.
    SandboxError with rootlessport's words when it cannot (a port taken meanwhile)."""
    if not os.access(PROGRAM, os.X_OK):
        raise SandboxError(f"-p on a bridge network needs {PROGRAM} (Debian's package podman): install it")
    # its sockets, kept in the container's folder (removed with it, even after a SIGKILL),
    # named through its own descriptor: a socket's path has 107 bytes at most
    scratch = os.path.join(folder, "rootlessport")
    os.makedirs(scratch, mode=0o700, exist_ok=True)
    held = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    config_r, config_w = os.pipe2(os.O_CLOEXEC)
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    log = os.open(os.path.join(folder, "rootlessport.log"), flags, 0o600)
    try:
        pid = network.spawn(PROGRAM, ["rootlessport"], [netns, exit_r, ready_w, held], log, folder, config_r, userns)
    finally:
        for fd in (config_r, exit_r, ready_w, log, held):
            os.close(fd)
    config = {
        "Mappings": [
            {
                "host_ip": port.host_ip,
                "host_port": port.host_port,
                "container_port": port.container_port,
                "protocol": port.protocol,
                "range": 1,
            }
            for port in ports
        ],
        "NetNSPath": "/proc/self/fd/3",
        "ExitFD": 4,
        "ReadyFD": 5,
        "TmpDir": f"/proc/{pid}/fd/6",  # its child, another process, finds the sockets there too
        "ChildIP": address,
        "ContainerID": "c",
        "RootlessCNI": False,
    }
    with os.fdopen(config_w, "wb") as told:  # far below a pipe's 64 KiB: MAX_PORTS entries
        told.write(json.dumps(config).encode())
    forwarder = Forwarder(network.Engine("rootlessport", pid, folder, exit_w), scratch)
    try:
        _wait_until_ready(forwarder, ready_r)
    except BaseException:
        forwarder.stop()
        raise
    finally:
        os.close(ready_r)
    return forwarder


def _wait_until_ready(forwarder: Forwarder, ready_r: int) -> None:
    if not select.select([ready_r], [], [], network.READY_SECONDS)[0]:
        raise SandboxError(f"rootlessport did not publish the ports within {network.READY_SECONDS:.0f} s")
    if os.read(ready_r, 64).strip() != b"1":
        _, status = os.waitpid(forwarder.engine.pid, 0)
        raise SandboxError(f"rootlessport could not publish the ports: {network.said(forwarder.engine, status)}")
