"""Durable writes for the file location, at less cost than one sync after the other.

- `FolderSync`: after a rename, a writer needs one fsync of its folder that *started after* that
  rename. Writers renaming into the same folder while one such fsync runs share the next one
  (group commit per folder), instead of each queueing its own.
- `start_writeback`: a big file's dirty pages are handed to the disk every SYNC_STEP bytes while
  it is still being written (Linux `sync_file_range`, a hint that waits for nothing), so the
  fsync before the acknowledgement finds little left to write: it no longer pays for the whole
  file at the end.
- `SYNC_THREADS`: durable writes block their thread in fsync for milliseconds; a pool of their
  own keeps concurrent writes syncing at the same time (the journal commits them together) and
  keeps the loop's default executor free for everything else.

None of this weakens the order of `file.py`'s `_finish`: the data is fsynced before the rename,
and the folder after it, before a write returns.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from typing import Any

# Bytes between two writeback hints on a big file.
SYNC_STEP = 32 * 1024 * 1024
# Threads of a durable file location's pool: enough for every concurrent small PUT of a busy
# client to be in fsync at once (threads are started only when needed).
SYNC_THREADS = 32
_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h: start writeback of the range's dirty pages, no wait


def _load_sync_file_range() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):  # not Linux (or no glibc): the final fsync does it all
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing [offset, offset + length) of `fd` to disk now (ctypes
    releases the GIL). Only a hint: durability still comes from the fsync after it."""
    global _sync_file_range
    if _sync_file_range is None:
        return
    if _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE) != 0:
        if ctypes.get_errno() in (38, 95):  # ENOSYS, EOPNOTSUPP: this kernel or filesystem
            _sync_file_range = None


def steps_crossed(offset: int, length: int, step: int = SYNC_STEP) -> list[int]:
    """The starts of the `step`-sized ranges that a write of [offset, offset + length)
    completes (a range counts as complete when the write reaches its end)."""
    first = offset // step + 1
    last = (offset + length) // step
    return [n * step - step for n in range(first, last + 1)]


class _Folder:
    __slots__ = ("changed", "done", "running", "started", "users")

    def __init__(self, lock: threading.Lock) -> None:
        self.started = 0  # fsyncs begun (the number of the last one)
        self.done = 0  # number of the last fsync that succeeded
        self.running = False
        self.users = 0  # threads waiting on or running this folder's fsync
        self.changed = threading.Condition(lock)


class FolderSync:
    """Group fsyncs of folders (for worker threads; `sync` blocks). Each caller has renamed a
    file into `folder` and returns once an fsync of `folder` that began after its call has
    succeeded: it runs that fsync itself, or shares the next one another caller runs. A failed
    fsync raises in its runner; the others then run their own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folders: dict[str, _Folder] = {}
        self.fsyncs = 0  # folder fsyncs run (tests and benchmarks read it)

    def sync(self, folder: str) -> None:
        with self._lock:
            state = self._folders.get(folder)
            if state is None:
                state = self._folders[folder] = _Folder(self._lock)
            ticket = state.started + 1  # the first fsync that can still begin after now
            state.users += 1
            try:
                while state.done < ticket:
                    if state.running:  # began before this call: wait for the next one
                        state.changed.wait()
                        continue
                    state.running = True
                    state.started += 1
                    number = state.started
                    self._lock.release()
                    try:
                        _fsync_folder(folder)
                    finally:
                        self._lock.acquire()
                        state.running = False
                        state.changed.notify_all()
                    state.done = number  # (only reached when the fsync succeeded)
                    self.fsyncs += 1
            finally:
                state.users -= 1
                if not state.users:
                    del self._folders[folder]


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
