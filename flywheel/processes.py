"""Facts about other processes, for state files that name them (ingest work folders, the Argilla server)."""

from __future__ import annotations

import psutil


def alive(pid: int) -> bool:
    """Whether a process runs: a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
