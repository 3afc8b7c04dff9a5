"""Where a sweep's files live: a local or network (NFS) folder, or an object store (s3://, gs://).

Everything goes through pyarrow filesystems, as Ray Tune and Ray Train do, so the run directory, Tune's
experiment state and the checkpoints share one address. A `Location` is a folder; files are written whole
(local: write-then-rename; object stores: one put, which readers see whole or not at all).

A multi-node sweep needs a location that every node sees: `unshared_nodes` finds the nodes that do not.
"""
import os
import tempfile
import uuid
from pathlib import Path

import pyarrow.fs

from rmsweep.sweep import atomic


def is_uri(address: str) -> bool:
    return "://" in str(address)


class Location:
    """A folder given as a local path or a URI; picklable, so that Ray actors and tasks can be handed one."""

    def __init__(self, address):
        address = os.fspath(address)
        if is_uri(address):
            self.filesystem, self.path = pyarrow.fs.FileSystem.from_uri(address)
            self.uri = address.rstrip("/")
        else:
            self.filesystem, self.path = pyarrow.fs.LocalFileSystem(), str(Path(address).expanduser().resolve())
            self.uri = self.path
        self.path = self.path.rstrip("/")

    def __repr__(self) -> str:
        return self.uri

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pyarrow.fs.LocalFileSystem)

    def child(self, name: str) -> "Location":
        return Location(f"{self.uri}/{name}")

    def address_of(self, path: str) -> str:
        """The address (local path or URI) of a filesystem path under this location, e.g. one Ray Train returns."""
        if self.is_local:
            return path
        return self.uri[: len(self.uri) - len(self.path)] + path.lstrip("/")

    def exists(self, name: str = "") -> bool:
        path = f"{self.path}/{name}" if name else self.path
        return self.filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound

    def make(self) -> None:
        self.filesystem.create_dir(self.path, recursive=True)

    def remove(self) -> None:
        if self.exists():
            self.filesystem.delete_dir(self.path)

    def write_bytes(self, name: str, data: bytes) -> None:
        if self.is_local:
            atomic.write_bytes(Path(self.path) / name, data)
            return
        with self.filesystem.open_output_stream(f"{self.path}/{name}") as stream:
            stream.write(data)

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode())

    def read_bytes(self, name: str) -> bytes:
        with self.filesystem.open_input_stream(f"{self.path}/{name}") as stream:
            return stream.read()

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode()

    def names(self) -> list[str]:
        """The files directly in this folder (none if it does not exist)."""
        if not self.exists():
            return []
        infos = self.filesystem.get_file_info(pyarrow.fs.FileSelector(self.path))
        return sorted(info.base_name for info in infos if info.type == pyarrow.fs.FileType.File)

    def size_bytes(self) -> int:
        if not self.exists():
            return 0
        infos = self.filesystem.get_file_info(pyarrow.fs.FileSelector(self.path, recursive=True))
        return sum(info.size for info in infos if info.type == pyarrow.fs.FileType.File)

    def writable(self) -> bool:
        """Whether files can be written here, without leaving anything behind: a local folder (or the nearest
        existing parent) is checked for permission; an object store is sent a probe file, then its deletion."""
        if self.is_local:  # a folder made and removed in the nearest existing parent (root passes os.access)
            probe = Path(self.path)
            while not probe.exists():
                probe = probe.parent
            try:
                tempfile.TemporaryDirectory(dir=probe, prefix=".rmsweep-write-probe-").cleanup()
                return True
            except OSError:
                return False
        probe = f"{self.path}/.rmsweep-write-probe-{uuid.uuid4().hex}"
        try:
            with self.filesystem.open_output_stream(probe):
                pass
            self.filesystem.delete_file(probe)
            return True
        except OSError:
            return False


def sees_probe(address: str, name: str, token: str) -> bool:
    """Run on each node: the address is resolved there, with that node's own mounts, credentials and endpoint."""
    try:
        return Location(address).read_text(name) == token
    except OSError:
        return False


def unshared_nodes(location: Location) -> list[str]:
    """Ids of the live Ray nodes that cannot read what this node writes at `location` (empty: shared)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    if len(nodes) < 2:
        return []
    # A marker file with a random token, written here and read back on every node.
    name, token = f".rmsweep-shared-probe-{uuid.uuid4().hex}", uuid.uuid4().hex
    location.make()
    location.write_text(name, token)
    check = ray.remote(num_cpus=0)(sees_probe)
    try:
        seen = ray.get([check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                        .remote(location.uri, name, token) for node in nodes])
    finally:
        location.filesystem.delete_file(f"{location.path}/{name}")
    return [node for node, sees in zip(nodes, seen) if not sees]
