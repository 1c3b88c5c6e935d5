"""`run_isolated`: a step in a spawned child that returns its result and dies with its caller."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from converter.errors import ExportError
from converter.isolation import run_isolated


def _raise_export_error(message: str) -> None:
    raise ExportError(message, hint="Try again")


def test_result_comes_back():
    assert run_isolated(divmod, 17, 5) == (3, 2)


def test_converter_error_reraises_in_caller():
    with pytest.raises(ExportError) as caught:
        run_isolated(_raise_export_error, "bad graph")

    assert "bad graph" in str(caught.value)


def test_child_exits_when_caller_is_killed():
    caller = subprocess.Popen([sys.executable, "-c", "import time\nfrom converter.isolation import run_isolated\nrun_isolated(time.sleep, 120)"])
    try:
        workers = _wait_for_children(caller.pid)
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait(timeout=10)
        _, alive = psutil.wait_procs(workers, timeout=15)
    finally:
        if caller.poll() is None:
            caller.kill()

    assert [w.pid for w in alive] == []


def _wait_for_children(pid: int) -> list[psutil.Process]:
    """Return the spawned worker processes of PID, a few seconds after the first one appears."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = [p for p in psutil.Process(pid).children() if "spawn_main" in " ".join(p.cmdline())]
        if workers:
            # Time for the worker to import converter.isolation and take the task.
            time.sleep(3)
            return workers
        time.sleep(0.2)
    raise AssertionError("no worker process appeared within 60 s")
