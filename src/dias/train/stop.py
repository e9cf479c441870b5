"""Ctrl-C and SIGTERM as a request to stop the training loop at the next step boundary.

stop = StopRequest()
stop.install()
while ... and stop.status is None:  # "interrupted" (Ctrl-C) or "terminated" (SIGTERM) once signalled
    ...
stop.restore()

Work that changes nothing (a frozen model's forward, say) can be dropped on the first signal instead:

try:
    with stop.abandon_on_stop():  # a signal here sets status and raises StepAbandoned at once
        ...
except StepAbandoned:
    ...  # status is set; save what was there before the block
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

STOP_STATUSES = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}  # a run stopped by a signal


class StepAbandoned(Exception):
    """A stop signal came inside `StopRequest.abandon_on_stop()`: the block's work is dropped, status is set."""


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM set `status` ("interrupted" / "terminated") instead of raising mid-step.

    A second Ctrl-C raises KeyboardInterrupt at once, so a user can always abort (last.pt then stays as it
    was last written: writes are atomic); further SIGTERMs change nothing. DataLoader workers forked later
    inherit the handlers, so a first Ctrl-C leaves them running too. Handlers can only be set from the main
    thread; elsewhere both signals keep their usual action.
    """

    def __init__(self):
        self.status: str | None = None
        self._ctrl_c = False
        self._abandon = False  # inside abandon_on_stop(): a signal raises StepAbandoned
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()  # the training process; a forked worker stays quiet

    def install(self) -> None:
        """Route SIGINT and SIGTERM here, from the main thread only."""
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_STATUSES:
                previous = signal.signal(signum, self._handle)
                self._previous[signum] = signal.SIG_DFL if previous is None else previous  # None: set outside Python

    def restore(self) -> None:
        """Put back the handlers that install replaced."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    @contextlib.contextmanager
    def abandon_on_stop(self) -> Iterator[None]:
        """Within the block a stop signal sets status and raises StepAbandoned at once, in this process.

        For work that changes no state, however long it takes: the caller drops it and stops promptly.
        """
        self._abandon = True
        try:
            yield
        finally:
            self._abandon = False

    def _handle(self, signum, frame) -> None:
        in_this_process = os.getpid() == self._pid  # a forked worker stays quiet
        if signum == signal.SIGINT:
            if self._ctrl_c:
                raise KeyboardInterrupt
            self._ctrl_c = True
            if in_this_process and not self._abandon:  # os.write: a handler inside a write must not re-enter it
                os.write(2, b"\nCtrl-C: stopping after this step and saving; Ctrl-C again stops at once\n")
        self.status = self.status or STOP_STATUSES[signum]
        if self._abandon and in_this_process:
            self._abandon = False
            raise StepAbandoned


class Terminated(BaseException):
    """SIGTERM, raised in the main thread by `terminate_raises`; a BaseException, as KeyboardInterrupt is."""


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """Within the block SIGTERM raises Terminated, so `with` blocks and `finally` clauses run, as on Ctrl-C.

    `dias train` installs its own StopRequest inside and puts this back when it returns. Outside the main
    thread (where no handler can be set) SIGTERM keeps its usual action.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
