"""A command's main() run in this process, as a test reads a subprocess's result: no interpreter start-up and no
second import of torch, transformers and scikit-learn (seconds each time). Each command keeps one test that runs
it as `python -m` to cover its entry point."""
import contextlib
import io
import os
import subprocess


def run_main(main, *args, cwd) -> subprocess.CompletedProcess:
    """main(args) in `cwd`: its exit status (argparse's SystemExit included) and what it printed."""
    stdout, stderr, previous = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = main([str(arg) for arg in args])
            except SystemExit as exit:
                status = exit.code
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(list(args), status, stdout.getvalue(), stderr.getvalue())
