"""Running model-generated code (HumanEval+, MBPP+ samples) so that no sample can hang the run or touch anything
outside its own folder.

Each sample runs in a process of its own, in Linux namespaces made with util-linux's `unshare` (no privileges
needed where unprivileged user namespaces are on, as on most distributions; as root, it first drops to `nobody`):
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

NOBODY = 65534
OUTPUT_TAIL = 2000  # characters of a sample's output kept with its outcome

# Runs inside the namespaces as their root (an unprivileged user outside): seals the filesystem, sets the limits,
# then becomes the sample, in /tmp/sample. argv: memory bytes, processes, file bytes, CPU seconds.
_BOOTSTRAP = r"""
import os, resource, subprocess, sys
memory, processes, file_size, cpu = map(int, sys.argv[1:5])
source = sys.stdin.read()
mounts = [line.split()[1].encode().decode("unicode_escape") for line in open("/proc/self/mounts")]
for mount in sorted(set(mounts), key=len):
    subprocess.run(["mount", "-o", "remount,bind,ro", mount], capture_output=True)
if not os.statvfs("/").f_flag & os.ST_RDONLY:
    sys.exit(97)  # the root could not be made read-only: refuse to run the sample
for folder, size in (("/tmp", file_size), ("/var/tmp", 1 << 20), ("/dev/shm", 1 << 20)):
    if os.path.isdir(folder):
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", folder], check=True)
os.makedirs("/tmp/sample")
os.chdir("/tmp/sample")
with open("sample.py", "w") as handle:
    handle.write(source)
for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_NPROC, processes),
                     (resource.RLIMIT_FSIZE, file_size), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(limit, (value, value))
# No capabilities left (an empty bounding set): the sample cannot undo the mounts or the limits.
os.execv("/usr/bin/setpriv", ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs",
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


def _usable_by_everyone(path: Path) -> bool:
    """Whether a user with no rights of its own can run `path` (every folder above it searchable)."""
    path = path.resolve()
    return os.stat(path).st_mode & 0o001 and all(os.stat(parent).st_mode & 0o001 for parent in path.parents)


def _interpreter() -> str:
    """The Python that runs samples: this one, or, where this one is private to root (root drops to `nobody`),
    the first everyone can run; samples need only the standard library."""
    if os.geteuid() != 0:
        return sys.executable
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3", "/usr/local/bin/python3"):
        if candidate and Path(candidate).exists() and _usable_by_everyone(Path(candidate)):
            return candidate
    raise SandboxUnavailable("no Python that the unprivileged user 'nobody' may run: generated code cannot run "
                             "sandboxed as root")


def _command(limits: Limits) -> list[str]:
    drop = (["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if os.geteuid() == 0 else [])
    return [*drop, "unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "--kill-child",
            _interpreter(), "-I", "-c", _BOOTSTRAP, str(limits.memory_mb << 20), str(limits.processes),
            str(limits.file_mb << 20), str(int(limits.wall_seconds) + 1)]


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
