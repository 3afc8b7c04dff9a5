"""Model-generated code runs sandboxed (`rmsweep/features/sandbox.py`): hostile samples neither hang the run nor
touch anything outside their own folder."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmsweep.features import sandbox

QUICK = sandbox.Limits(wall_seconds=3)


def _no_sample_left() -> bool:
    """No process of a sample runs any more (each runs `sample.py`)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"sample.py" in cmdline.read_bytes():
                return False
        except OSError:  # the process ended while we looked
            continue
    return True


def test_a_correct_sample_passes_and_a_wrong_one_fails():
    assert sandbox.run_python("assert sorted([3, 1, 2]) == [1, 2, 3]\nprint('ok')") == sandbox.Outcome(
        "passed", 0, "ok\n")
    failed = sandbox.run_python("assert 1 + 1 == 3")
    assert failed.status == "failed" and failed.returncode == 1 and "AssertionError" in failed.output


def test_a_sample_has_a_private_writable_folder_and_tmp():
    outcome = sandbox.run_python("import os, tempfile\nopen('scratch.txt', 'w').write('x')\n"
                                 "tempfile.NamedTemporaryFile().write(b'x')\nprint(os.getcwd())")
    assert outcome.status == "passed" and outcome.output.strip() == "/tmp/sample"


def test_an_infinite_loop_is_killed_at_the_wall_time_limit():
    started = time.monotonic()
    outcome = sandbox.run_python("while True:\n    pass", QUICK)
    assert outcome.status == "timeout" and time.monotonic() - started < QUICK.wall_seconds + 5
    assert _no_sample_left()


def test_a_fork_bomb_neither_hangs_the_run_nor_outlives_its_sample():
    started = time.monotonic()
    outcome = sandbox.run_python("import os\nwhile True:\n    os.fork()", QUICK)
    assert outcome.status in ("failed", "timeout") and time.monotonic() - started < QUICK.wall_seconds + 5
    assert _no_sample_left()


def test_a_large_allocation_fails_within_the_memory_limit():
    outcome = sandbox.run_python("block = bytearray(64 * 1024 ** 3)", sandbox.Limits(memory_mb=512))
    assert outcome.status == "failed" and "MemoryError" in outcome.output


def test_writes_outside_the_samples_folder_land_nowhere(tmp_path):
    targets = [tmp_path / "written", Path.cwd() / "written-by-a-sample", Path.home() / "written-by-a-sample"]
    for target in targets:
        outcome = sandbox.run_python(f"open({str(target)!r}, 'w').write('x')")
        assert outcome.status == "failed", target
        assert not target.exists(), target
    undo = sandbox.run_python("import subprocess, sys\n"
                              "sys.exit(subprocess.run(['mount', '-o', 'remount,rw', '/']).returncode)")
    assert undo.status == "failed"  # no capability left to undo the read-only mounts


def test_a_network_connection_is_refused_and_reaches_no_one():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        outcome = sandbox.run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")
        server.settimeout(0.5)
        with pytest.raises(TimeoutError):
            server.accept()
    assert outcome.status == "failed" and "OSError" in outcome.output


def test_endless_output_is_capped_and_kept_short():
    outcome = sandbox.run_python("while True:\n    print('x' * 1000)", sandbox.Limits(wall_seconds=5, file_mb=1))
    assert outcome.status == "failed" and len(outcome.output) <= sandbox.OUTPUT_TAIL


def test_a_sample_runs_with_this_python_wherever_it_lives(tmp_path):
    """This Python may live under /tmp, which the sample gets a fresh one of, or, as root, under a folder closed to
    others (/root): the sample runs with it all the same (EvalPlus's tests import its numpy)."""
    venv = tmp_path / "venv"  # under /tmp
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    program = ("from rmsweep.features import sandbox\n"
               "print(sandbox.run_python('import sys; print(sys.prefix)'))")
    result = subprocess.run([str(venv / "bin" / "python"), "-c", program], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert result.returncode == 0, result.stderr
    assert f"status='passed', returncode=0, output='{venv}\\n'" in result.stdout, result.stdout
