"""Process liveness by PID (never by name)."""

from __future__ import annotations

from pathlib import Path


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
