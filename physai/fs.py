"""Small file-system and process helpers shared by the crash-safe writers (checkpoints, datasets)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a leftover named after a dead writer can be cleaned)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
