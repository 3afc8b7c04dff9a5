"""Running model-generated code (HumanEval+, MBPP+ samples) so that no sample can hang the run or touch anything
outside its own folder.

Each sample runs in a process of its own, in Linux namespaces made with util-linux's `unshare` (no privileges
needed where unprivileged user namespaces are on, as on most distributions; as root, the sample itself runs as
`nobody`, and this Python, whose packages EvalPlus's tests import (numpy), is made reachable for it):
- no network: a new network namespace holds only a loopback device that is down;
- nothing written outside: every mount is remounted read-only, and the sample's working folder, /tmp, /var/tmp and
  /dev/shm are fresh tmpfs mounts that vanish with it;
- a new PID namespace: when the sample's first process ends or is killed, every process it started dies with it;
- no capabilities: the sample cannot undo the mounts or raise its limits;
- resource limits: address space (memory), processes of the (unprivileged) user, file size, CPU time; and a
  wall-time limit after which the whole process group is killed.
Its output goes to a file capped by the file-size limit, so a sample printing without end fills no memory.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

OUTPUT_TAIL = 2000  # characters of a sample's output kept with its outcome

# Runs inside the namespaces as their root (an unprivileged user outside, or real root, who has the sample run as
# `nobody`): seals the filesystem, sets the limits, then becomes the sample, in /tmp/sample. argv: memory bytes,
# processes, file bytes, CPU seconds, 1 to run the sample as nobody (else 0), then this Python's folders
# (sys.prefix, sys.base_prefix).
_BOOTSTRAP = r"""
import os, pathlib, resource, subprocess, sys
memory, processes, file_size, cpu, as_nobody = map(int, sys.argv[1:6])
python_folders = sys.argv[6:]
source = sys.stdin.read()
NOBODY = 65534

def mount(*args, **options):
    subprocess.run(["mount", "--no-mtab", *args], check=True, **options)

# This Python, which samples run with (EvalPlus's tests import its numpy), held open before anything covers it: a
# fresh /tmp when it lives there, or, for nobody, an empty folder over one closed to others above it (/root, say).
def outermost_closed(folder):  # the outermost folder on the way (itself included) others may not enter
    path = pathlib.Path(folder)
    return next((str(p) for p in reversed([path, *path.parents]) if not os.stat(p).st_mode & 0o001), None)

held = {folder: os.open(folder, os.O_PATH) for folder in python_folders}
closed = {outermost_closed(folder) for folder in python_folders} - {None} if as_nobody else set()
mounts = [line.split()[1].encode().decode("unicode_escape") for line in open("/proc/self/mounts")]
for mount_point in sorted(set(mounts), key=len):
    subprocess.run(["mount", "-o", "remount,bind,ro", mount_point], capture_output=True)
if not os.statvfs("/").f_flag & os.ST_RDONLY:
    sys.exit(97)  # the root could not be made read-only: refuse to run the sample
for folder, size in (("/tmp", file_size), ("/var/tmp", 1 << 20), ("/dev/shm", 1 << 20)):
    if os.path.isdir(folder):
        mount("-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", folder)
closed = {folder for folder in closed if os.path.isdir(folder)}  # one under /tmp went with the old /tmp
for folder in sorted(closed):
    mount("-t", "tmpfs", "-o", "size=1m,mode=755", "tmpfs", folder)
for folder, descriptor in held.items():  # mounted back where covered, read-only, nothing else of what was there
    if not os.path.exists(folder) or not os.path.samestat(os.stat(folder), os.fstat(descriptor)):
        os.makedirs(folder, exist_ok=True)
        mount("--no-canonicalize", "--bind", f"/proc/self/fd/{descriptor}", folder, pass_fds=[descriptor])
        mount("-o", "remount,bind,ro", folder)
    os.close(descriptor)
for folder in closed:
    mount("-o", "remount,ro", folder)
os.makedirs("/tmp/sample")
os.chdir("/tmp/sample")
with open("sample.py", "w") as handle:
    handle.write(source)
drop = []
if as_nobody:
    os.chown("/tmp/sample", NOBODY, NOBODY)
    os.chown("sample.py", NOBODY, NOBODY)
    drop = [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_NPROC, processes),
                     (resource.RLIMIT_FSIZE, file_size), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(limit, (value, value))
# No capabilities left (an empty bounding set): the sample cannot undo the mounts or the limits.
os.execv("/usr/bin/setpriv", ["setpriv", *drop, "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs",
                              sys.executable, "-I", "sample.py"])
"""
_SEAL_FAILED = 97


class SandboxUnavailable(RuntimeError):
    """This machine cannot make the namespaces (no `unshare`, or user namespaces off)."""


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 10.0
    memory_mb: int = 2048
    processes: int = 32
    file_mb: int = 64


@dataclass(frozen=True)
class Outcome:
    status: str  # "passed" (exit 0), "failed" (any other exit) or "timeout" (killed at the wall-time limit)
    returncode: int | None
    output: str  # the tail of its stdout and stderr


def _command(limits: Limits) -> list[str]:
    """Unprivileged: user namespaces map this user to the namespaces' root. As root: the namespaces without one,
    the sample run as `nobody`."""
    as_root = os.geteuid() == 0
    folders = sorted({str(Path(sys.prefix).resolve()), str(Path(sys.base_prefix).resolve())})
    return ["unshare", *([] if as_root else ["--user", "--map-root-user"]), "--mount", "--net", "--pid", "--fork",
            "--kill-child", sys.executable, "-I", "-c", _BOOTSTRAP, str(limits.memory_mb << 20),
            str(limits.processes), str(limits.file_mb << 20), str(int(limits.wall_seconds) + 1), str(int(as_root)),
            *folders]


def available() -> bool:
    """Whether samples can run sandboxed here (a passing sample passes)."""
    try:
        return run_python("pass", Limits(wall_seconds=20)).status == "passed"
    except SandboxUnavailable:
        return False


def run_python(source: str, limits: Limits = Limits()) -> Outcome:
    """Run `source` as a Python program in a sandbox; its exit status decides pass or fail."""
    for tool in ("unshare", "mount", "setpriv"):
        if shutil.which(tool) is None:
            raise SandboxUnavailable(f"no {tool!r} on this machine: generated code cannot run sandboxed")
    with tempfile.TemporaryDirectory(prefix="rmsweep-sample-") as outside:
        log_path = Path(outside) / "output"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(_command(limits), stdin=subprocess.PIPE, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                process.communicate(source.encode(), timeout=limits.wall_seconds)
                status = "passed" if process.returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                status = "timeout"
            finally:
                _kill_group(process)
        output = log_path.read_bytes()[-OUTPUT_TAIL:].decode(errors="replace")
    if process.returncode == _SEAL_FAILED or "unshare:" in output[:200]:
        raise SandboxUnavailable(f"the sandbox could not be made here: {output.strip().splitlines()[-1:]}")
    return Outcome(status, None if status == "timeout" else process.returncode, output)


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the sample's whole process group (its PID namespace dies with its first process) and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
