"""Stop a run cleanly on SIGTERM and SIGHUP, as Ctrl-C (SIGINT) already does.

`kill`, `docker stop`, a closed terminal and a scheduler's preemption (Slurm sends SIGTERM) end a
process with a signal whose default action loses the rows buffered since the last flush and leaves the
run "running" until a reader notices its process is gone. Inside `stop_on_signals()` such a signal
raises `Terminated` (a KeyboardInterrupt, so everything that handles Ctrl-C handles it): the run store
flushes and records the run as interrupted with the signal as the reason.

    with stop_on_signals():
        train(...)
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """The process received a stop signal (`signum`); raised in the main thread like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(
            f"received {signal.Signals(signum).name} (kill, docker stop, a closed terminal or a "
            "scheduler's preemption); the run keeps every recorded step"
        )


_pending: list[int] = []  # a stop signal received and not yet raised where it could propagate


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    _pending.append(signum)
    raise Terminated(signum)


def raise_if_stopped() -> None:
    """Raise `Terminated` for a stop signal received since the block began.

    The handler raises at once, but a signal that arrives while Python runs a finalizer (`__del__`,
    autograd's saved-tensor hooks) has its exception printed and dropped; a loop calls this at each
    step so such a signal still stops the run."""
    if _pending:
        raise Terminated(_pending[-1])


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise `Terminated`; the previous handlers come back after.

    Only the main thread may install signal handlers; elsewhere (a worker thread) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_terminated) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        _pending.clear()
        for s, handler in previous.items():
            signal.signal(s, handler)
