"""Processes by PID (never by name): liveness, and stopping the ones the suite started."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie.

    Orphans (e.g. a postmaster once ``pg_ctl`` exited) are re-parented to PID 1, which may reap
    them late, so ``os.kill(pid, 0)`` alone would call a dead process alive.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Stop a process this suite started, by its PID: SIGTERM, then SIGKILL after ``grace`` s."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
