"""Tune storage on the driver's own disk, reachable from every node of a cluster through Ray.

Ray Tune writes trial checkpoints to `storage_path` from whichever node ran the trial, so on a
cluster that path must be reachable from every node. Without a shared disk (NFS, object store),
this filesystem relays each operation of a trial on another node to a small actor pinned to the
driver's node, which does it on that node's local disk; the driver and trials on its own node use
the disk directly. The winner's booster thus reaches the driver whether or not the nodes share a
filesystem.
"""

from __future__ import annotations

import io

import pyarrow
import pyarrow.fs as pafs
import ray
import ray.util.scheduling_strategies

ACTOR_NAMESPACE = "seedcore"
_ACTOR_PREFIX = "seedcore-storage-"


class _LocalDisk:
    """The operations the relay forwards, done on this node's local disk (plain, picklable values)."""

    def __init__(self):
        self.fs = pafs.LocalFileSystem()

    def info(self, paths: list[str]) -> list[tuple]:
        return [_info_tuple(i) for i in self.fs.get_file_info(paths)]

    def select(self, base_dir: str, allow_not_found: bool, recursive: bool) -> list[tuple]:
        selector = pafs.FileSelector(base_dir, allow_not_found=allow_not_found, recursive=recursive)
        return [_info_tuple(i) for i in self.fs.get_file_info(selector)]

    def call(self, method: str, *args, **kwargs):
        if method not in _FORWARDED:  # only filesystem operations, never arbitrary attributes
            raise ValueError(f"not a relayed filesystem operation: {method}")
        return getattr(self.fs, method)(*args, **kwargs)

    def read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    def write(self, path: str, data: bytes) -> None:
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)  # as object stores do: no parent needed
        with self.fs.open_output_stream(path) as stream:
            stream.write(data)


_FORWARDED = frozenset({"create_dir", "delete_dir", "delete_dir_contents", "delete_file", "move", "copy_file"})
_StorageActor = ray.remote(num_cpus=0, max_concurrency=8)(_LocalDisk)
_ACTORS: dict = {}  # home node id -> the relay actor this driver started there


def _info_tuple(info: pafs.FileInfo) -> tuple:
    return info.path, int(info.type), info.size, info.mtime_ns


def _info(values: tuple) -> pafs.FileInfo:
    path, kind, size, mtime_ns = values
    return pafs.FileInfo(path, type=pafs.FileType(kind), size=size, mtime_ns=mtime_ns)


class _Upload(io.BytesIO):
    """A write stream that hands its bytes to the relay when closed."""

    def __init__(self, send, path: str):
        super().__init__()
        self._send, self._path = send, path

    def close(self) -> None:
        if not self.closed:
            self._send(self._path, self.getvalue())
        super().close()


class RelayHandler(pafs.FileSystemHandler):
    """pyarrow filesystem handler: local on the home node, relayed to the home node's actor elsewhere."""

    def __init__(self, home_node_id: str):
        self.home_node_id = home_node_id
        self._target = None

    def __getstate__(self):
        return {"home_node_id": self.home_node_id}

    def __setstate__(self, state):
        self.__init__(state["home_node_id"])

    def _disk(self):
        """(run, target): run(target.method, *args) does the operation, here or on the home node."""
        if self._target is None:
            if ray.get_runtime_context().get_node_id() == self.home_node_id:
                self._target = (lambda fn, *args, **kwargs: fn(*args, **kwargs), _LocalDisk())
            else:
                actor = ray.get_actor(_ACTOR_PREFIX + self.home_node_id, namespace=ACTOR_NAMESPACE)
                self._target = (lambda fn, *args, **kwargs: ray.get(fn.remote(*args, **kwargs)), actor)
        return self._target

    def _do(self, method: str, *args, **kwargs):
        run, target = self._disk()
        return run(getattr(target, method), *args, **kwargs)

    def get_type_name(self) -> str:
        return "seedcore-relay"

    def equals(self, other) -> bool:
        return isinstance(other, RelayHandler) and other.home_node_id == self.home_node_id

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths):
        return [_info(v) for v in self._do("info", list(paths))]

    def get_file_info_selector(self, selector):
        return [_info(v) for v in self._do("select", selector.base_dir, selector.allow_not_found,
                                           selector.recursive)]

    def create_dir(self, path, recursive):
        self._do("call", "create_dir", path, recursive=recursive)

    def delete_dir(self, path):
        self._do("call", "delete_dir", path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self._do("call", "delete_dir_contents", path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("refusing to delete the contents of the root directory")

    def delete_file(self, path):
        self._do("call", "delete_file", path)

    def move(self, src, dest):
        self._do("call", "move", src, dest)

    def copy_file(self, src, dest):
        self._do("call", "copy_file", src, dest)

    def open_input_stream(self, path):
        return pyarrow.BufferReader(self._do("read", path))

    def open_input_file(self, path):
        return pyarrow.BufferReader(self._do("read", path))

    def open_output_stream(self, path, metadata):
        return pyarrow.PythonFile(_Upload(lambda p, data: self._do("write", p, data), path), mode="w")

    def open_append_stream(self, path, metadata):
        raise NotImplementedError("Tune storage never appends")


def driver_storage() -> pafs.PyFileSystem:
    """A filesystem for Tune's `storage_filesystem`: this (driver) node's disk, reachable from every node.

    Starts the relay actor on this node once per driver process (it ends with the driver). The first handle,
    the owner's, is kept for the process's life: replaced by a later `get_if_exists` handle (a borrower's) it
    would be dropped, and Ray ends an actor whose owner's handles are all gone, under the next sweep's trials.
    """
    home = ray.get_runtime_context().get_node_id()
    if home not in _ACTORS:
        _ACTORS[home] = _StorageActor.options(
            name=_ACTOR_PREFIX + home, namespace=ACTOR_NAMESPACE, get_if_exists=True,
            scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(home, soft=False),
        ).remote()
    return pafs.PyFileSystem(RelayHandler(home))
