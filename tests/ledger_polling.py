"""Watching a running sweep's ledger from a test, to strike (kill a worker, the driver, a node) at a known point."""
import time

import pandas as pd


def poll_ledger(read, find, *, timeout: float = 240, still_running=lambda: True):
    """The first `find(ledger)` that is not None, the ledger (`read()`: trials.csv as a DataFrame) read every
    half second while `still_running()`; None once `timeout` seconds have passed or the sweep has ended. A ledger
    not yet written, or caught while being replaced, is read again."""
    deadline = time.time() + timeout
    while time.time() < deadline and still_running():
        time.sleep(0.5)
        try:
            ledger = read()
        except (OSError, pd.errors.EmptyDataError):
            continue
        found = find(ledger)
        if found is not None:
            return found
    return None
