"""What every rmsweep command shares: one-line errors with exit status 2, and logging to the console."""
import argparse
import logging
import sys


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`prog: error: ...`, exit 2), not the usage block then the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def setup_logging(verbose: bool = False) -> None:
    """rmsweep's own lines on stdout, as plain messages; --verbose adds debug lines and other libraries' info."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("rmsweep").setLevel(logging.DEBUG if verbose else logging.INFO)
