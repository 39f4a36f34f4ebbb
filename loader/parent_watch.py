"""Helper processes that die with the gateway that started them.

The gateway runs some work in child processes (the ONNX conversion, the head start of a
deploy). A child that outlived its gateway would keep writing into a cache directory nobody
owns any more, so each one watches its parent and exits when it is gone.
"""

from __future__ import annotations

import os
import threading
import time

PARENT_PID_ENV = "LOCKGATE_PARENT_PID"


def child_environment() -> dict[str, str]:
    """The environment for a child that must exit with this process."""
    return {**os.environ, PARENT_PID_ENV: str(os.getpid())}


def exit_with_parent(parent_pid: int | None = None, interval: float = 0.5) -> None:
    """Exit as soon as ``parent_pid`` (default: from the environment) is no longer this
    process's parent: it died, and this process was re-parented. A watch thread rather than
    PR_SET_PDEATHSIG: that needs a preexec_fn, which is unsafe in the gateway's multi-threaded
    process, and Linux alone."""
    if parent_pid is None:
        if not os.environ.get(PARENT_PID_ENV):
            return
        parent_pid = int(os.environ[PARENT_PID_ENV])

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(3)  # nothing to clean up: every write of a child is atomic, or not made

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
