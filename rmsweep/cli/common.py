"""What every rmsweep command shares: one-line errors with exit status 2, and logging to the console."""
import argparse
import logging
import sys


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`prog: error: ...`, exit 2), not the usage block then the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Stdout(logging.StreamHandler):
    """Writes to whatever sys.stdout is when a line is logged (pytest and notebooks swap it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(verbose: bool = False) -> None:
    """rmsweep's own lines on stdout, as plain messages; --verbose adds its debug lines and other libraries' info.
    Other handlers (a caller's, pytest's) still receive rmsweep's records."""
    logger = logging.getLogger("rmsweep")
    if not any(isinstance(handler, _Stdout) for handler in logger.handlers):
        handler = _Stdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
