"""One writer per project: a `kedro run` or `kedro resume` holds the project's run lock.

Two runs writing one project at once would each read the other's newest versions and mix two
runs in one report. So a run takes ``data/09_tracking/run.lock`` first: an exclusive `flock`
on the file, which records who holds it (pid, host, start time, command). A second run finds
the file locked and stops at once, naming the holder; readers (`cart-search`, the search page,
a served model) never take it and keep working during a run. The kernel drops a `flock` when
its process ends, however it ends, so the lock of a run that was killed is simply taken by the
next run: there is nothing stale to clean up.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

from cart_pipeline.core.errors import InputError

LOCK_FILE = Path("data/09_tracking/run.lock")

_held: dict[Path, int] = {}  # lock path -> file descriptor, for the locks this process holds


class ProjectLocked(InputError):
    """Another run is writing this project."""


def acquire(project: Path) -> bool:
    """Take the project's run lock; False when this process holds it already (a session run
    inside `kedro run`, which took it first). Raises :class:`ProjectLocked` naming the holder."""
    path = (Path(project) / LOCK_FILE).resolve()
    if path in _held:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ProjectLocked(f"another run is writing this project ({holder(path)}); wait for "
                            "it to finish or stop it — cart-search and the search page keep "
                            "working meanwhile") from None  # fmt: skip
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    _held[path] = fd
    return True


def release(project: Path) -> None:
    """Let the lock go (the kernel does it anyway when the process ends)."""
    fd = _held.pop((Path(project) / LOCK_FILE).resolve(), None)
    if fd is not None:
        os.close(fd)


def holder(path: Path) -> str:
    """Who holds the lock at ``path``, in words, as far as its record says."""
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        record = {}
    if not record:
        return "a run that is just starting"
    return (
        f"pid {record.get('pid')} on {record.get('host')}, started {record.get('started')}: "
        f"{record.get('command')}"
    )
