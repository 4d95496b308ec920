"""Other processes: facts about those that state files name (ingest work folders, the Argilla server), and the
servers a command runs in the foreground (the Dagster UI, a Celery worker)."""

from __future__ import annotations

import signal
import subprocess

import psutil


def alive(pid: int) -> bool:
    """Whether a process runs: a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def supervise(process: subprocess.Popen) -> int:
    """Wait for a server started in the foreground and return its exit code. A stop asked of this process is
    passed on: Ctrl-C, and SIGTERM from a service manager, `kill` or a container runtime, which would otherwise
    end this process alone and leave the server running without it."""
    previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
