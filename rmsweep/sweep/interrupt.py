"""Ctrl-C during a sweep: the first stops handing out trials and lets each running trial reach its next
evaluation (which writes a checkpoint), the second stops at once. Either way the run directory then holds the
ledger and a report marked interrupted, and `--resume` continues the sweep.

The flag is module state, not an object: Tune pickles the searcher and callbacks with its experiment state.
"""
import logging
import os
import signal
import threading

log = logging.getLogger(__name__)
_requested = threading.Event()


def requested() -> bool:
    return _requested.is_set()


def request() -> None:
    """What the first Ctrl-C does; a second one (KeyboardInterrupt) marks the sweep interrupted too."""
    _requested.set()


def _first(signum, frame) -> None:
    request()
    log.warning("\nstopping: no new trials; running trials stop at their next evaluation (Ctrl-C again: stop now)")
    signal.signal(signal.SIGINT, signal.default_int_handler)


class Handler:
    """Installs the Ctrl-C handling for the duration of a `with` block (Tune's own handler is turned off)."""

    def __enter__(self):
        _requested.clear()
        self._previous = None
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
            self._previous = signal.signal(signal.SIGINT, _first)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

