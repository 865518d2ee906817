"""The signals the monitor passes on to a container's PID 1, in one list: the runner
forwards them while a run lasts, the monitor ignores them between runs (TERM aside, which
asks for a stop), `kill -s` delivers them (and KILL), `attach --sig-proxy` proxies them
(WINCH aside: a terminal's own). Plain ints from `_signal`, the C half of `signal`, whose
enums cost a warm start milliseconds."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal

FORWARDED: tuple[int, ...] = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
