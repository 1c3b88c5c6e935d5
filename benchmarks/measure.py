"""Run a command as a subprocess and measure its wall time, CPU time and peak resident memory.

Peak memory is the larger of two readings. One is psutil polling of the
whole process tree every 100 ms, summing PSS, which includes the children of a
child but can miss a spike shorter than the interval. Polling every 20 ms
took about 30% of one core, which slowed the measured command on 2 cores. PSS and not RSS,
because a forked child shares its parent's pages and a sum of RSS would
count them twice. The other is GNU
time's maximum resident set size, which the kernel keeps exactly but only
for the largest single process of the tree. The command runs under
/usr/bin/time because Linux carries a process's peak RSS across fork and
exec, so `ru_maxrss` of a direct child would include this process's own
memory.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

POLL_SECONDS = 0.1
TIME_COMMAND = "/usr/bin/time"


@dataclass(frozen=True)
class Measurement:
    """One command's exit status, wall and CPU seconds, and peak RSS in bytes."""

    command: list[str]
    exit_code: int
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    kernel_peak_rss_bytes: int
    tree_peak_pss_bytes: int
    log_path: str

    @property
    def peak_rss_gb(self) -> float:
        return self.peak_rss_bytes / 1e9


def measure(command: list[str], *, log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Measurement:
    """Run COMMAND with stdout and stderr in LOG_PATH, and return its measurement."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rss_path = log_path.with_suffix(".maxrss")
    timed = [TIME_COMMAND, "--format", "%M", "--output", str(rss_path), *command]
    with open(log_path, "wb") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(timed, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        tree_peak, status, usage = _poll_until_exit(process.pid)
        wall = time.perf_counter() - started
    # wait4 reaped the child, so tell Popen not to wait for it again.
    process.returncode = os.waitstatus_to_exitcode(status)

    kernel_peak = _read_maxrss_kib(rss_path) * 1024
    return Measurement(
        command=list(command),
        exit_code=process.returncode,
        wall_s=round(wall, 3),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
        peak_rss_bytes=max(tree_peak, kernel_peak),
        kernel_peak_rss_bytes=kernel_peak,
        tree_peak_pss_bytes=tree_peak,
        log_path=str(log_path),
    )


def _poll_until_exit(pid: int) -> tuple[int, int, object]:
    """Sample the PSS of PID's tree until PID exits; return the peak sum, the wait status and the rusage."""
    root = psutil.Process(pid)
    peak = 0
    while True:
        waited, status, usage = os.wait4(pid, os.WNOHANG)
        if waited == pid:
            return peak, status, usage
        peak = max(peak, _tree_pss(root))
        time.sleep(POLL_SECONDS)


def _read_maxrss_kib(path: Path) -> int:
    """Read GNU time's %M output; its last line is the value, after any "Command exited" line."""
    lines = path.read_text().split()
    return int(lines[-1]) if lines and lines[-1].isdigit() else 0


def _tree_pss(root: psutil.Process) -> int:
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            continue  # The process exited between listing and reading.
    return total
