"""One sweep per run directory: the driver claims it before any other write, and keeps the claim fresh.

The claim is `claim.json` in the run directory (host, pid, start time, heartbeat), created exclusively: on a
local or mounted folder with O_EXCL, on S3 with a conditional put (`If-None-Match: *`), on other object stores
by writing and reading back a token (a race of two drivers within the same moment is then not excluded).
A claim is stale when its driver is gone: the process is dead on this host, or its heartbeat is older than
STALE_AFTER_SECONDS. `--resume` takes a stale claim over; a live one stops a second sweep with exit status 2.
"""
import importlib.util
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from urllib.parse import parse_qs, urlparse

from rmsweep.sweep import storage

FILE = "claim.json"
HEARTBEAT_SECONDS = 30
STALE_AFTER_SECONDS = 4 * HEARTBEAT_SECONDS
log = logging.getLogger(__name__)


class Claimed(Exception):
    """The run directory is claimed by a live sweep; the message names it."""


@dataclass(frozen=True)
class Claim:
    host: str
    pid: int
    started: float
    token: str
    heartbeat: float

    @staticmethod
    def mine() -> "Claim":
        now = time.time()
        return Claim(socket.gethostname(), os.getpid(), now, uuid.uuid4().hex, now)

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, started {started}"

    def is_stale(self) -> bool:
        """Its driver is gone: no heartbeat for STALE_AFTER_SECONDS, or (on this host) no such process."""
        if time.time() - self.heartbeat > STALE_AFTER_SECONDS:
            return True
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's process
            pass
        return False


def read(run_dir: storage.Location) -> Claim | None:
    if not run_dir.exists(FILE):
        return None
    try:
        return Claim(**json.loads(run_dir.read_text(FILE)))
    except (ValueError, TypeError, OSError):  # half-written by a driver that died mid-write: nobody's
        return None


def _create_exclusively(run_dir: storage.Location, data: bytes) -> bool:
    """Write the claim only if none exists; False when another driver's is there."""
    path = f"{run_dir.path}/{FILE}"
    if run_dir.is_local:
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        return True
    if run_dir.uri.startswith("s3://") and importlib.util.find_spec("boto3"):
        return _s3_put_if_absent(run_dir, path, data)
    if run_dir.exists(FILE):
        return False
    run_dir.write_bytes(FILE, data)
    return json.loads(run_dir.read_text(FILE))["token"] == json.loads(data)["token"]


def _s3_put_if_absent(run_dir: storage.Location, path: str, data: bytes) -> bool:
    import boto3
    from botocore.exceptions import ClientError

    bucket, _, key = path.partition("/")
    query = parse_qs(urlparse(run_dir.uri).query)  # s3://bucket/path?endpoint_override=host:port&scheme=http
    endpoint = query.get("endpoint_override", [None])[0]
    if endpoint:
        endpoint = f"{query.get('scheme', ['https'])[0]}://{endpoint}"
    client = boto3.client("s3", endpoint_url=endpoint)  # else boto3's own: AWS_ENDPOINT_URL, or AWS
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        return True
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise


def take(run_dir: storage.Location, resume: bool) -> Claim:
    """Claim the run directory (which must exist). A live claim raises Claimed; a stale one is taken over only
    with `resume`, and reported."""
    mine = Claim.mine()
    data = json.dumps(asdict(mine)).encode()
    if _create_exclusively(run_dir, data):
        return mine
    held = read(run_dir)
    if held is not None and not held.is_stale():
        raise Claimed(f"run directory {run_dir} is in use by a running sweep ({held.describe()})")
    if not resume:
        raise Claimed(f"run directory {run_dir} holds the claim of a sweep that is gone"
                      f"{f' ({held.describe()})' if held else ''}; continue it with --resume")
    log.warning("taking over the claim of a sweep that is gone%s", f" ({held.describe()})" if held else "")
    run_dir.filesystem.delete_file(f"{run_dir.path}/{FILE}")
    if not _create_exclusively(run_dir, data):
        raise Claimed(f"run directory {run_dir} was claimed by another sweep just now")
    return mine


class Heartbeat:
    """Rewrites the claim's heartbeat every HEARTBEAT_SECONDS from a daemon thread; `release` deletes the claim."""

    def __init__(self, run_dir: storage.Location, claim: Claim):
        self._run_dir, self._claim, self._stop = run_dir, claim, threading.Event()
        self._thread = threading.Thread(target=self._beat, name="rmsweep-claim-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            claim = Claim(**{**asdict(self._claim), "heartbeat": time.time()})
            try:
                self._run_dir.write_text(FILE, json.dumps(asdict(claim)))
            except OSError as error:  # the storage hiccuped: the next beat tries again
                log.debug("claim heartbeat failed: %s", error)

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        held = read(self._run_dir)
        if held is not None and held.token == self._claim.token:
            self._run_dir.filesystem.delete_file(f"{self._run_dir.path}/{FILE}")
