"""Facts about the machine and the processes a benchmark runs: cores,
memory, load average, versions, CPU time and peak RSS from /proc.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages of /proc/loadavg."""
    with open("/proc/loadavg") as file:
        return [float(value) for value in file.read().split()[:3]]


def memory_total_bytes() -> int:
    with open("/proc/meminfo") as file:
        for line in file:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_bytes": memory_total_bytes(),
        "kernel": platform.release(),
        "load_average": load_average(),
    }


def command_output(argv: list[str], pattern: str | None = None, cwd: Path | None = None) -> str:
    """Return the first line of a command's output (or the first match of
    `pattern`), or "unknown" when the command fails."""
    try:
        result = subprocess.run(
            [str(arg) for arg in argv], capture_output=True, text=True, timeout=30, cwd=cwd, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = result.stdout + result.stderr
    if pattern is not None:
        match = re.search(pattern, text)
        return match.group(1) if match else "unknown"
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def git_commit(repo: Path) -> str:
    """Return the commit of the work tree, with "-dirty" when tracked files changed."""
    commit = command_output(["git", "rev-parse", "HEAD"], cwd=repo)
    status = command_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo)
    return commit + ("-dirty" if status not in ("", "unknown") else "")


@dataclass
class ProcessSample:
    """CPU seconds (user + system) and peak RSS of one process at one moment."""

    pid: int
    cpu_seconds: float
    peak_rss_bytes: int
    rss_bytes: int


def sample_process(pid: int) -> ProcessSample | None:
    """Read /proc/PID/stat and /proc/PID/status; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
        with open(f"/proc/{pid}/status") as file:
            status = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Fields after the command name start at field 3 (state); utime and
    # stime are fields 14 and 15 of proc(5).
    utime, stime = int(fields[11]), int(fields[12])

    def kib(name: str) -> int:
        match = re.search(rf"^{name}:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else 0

    return ProcessSample(pid, (utime + stime) / CLOCK_TICKS, kib("VmHWM"), kib("VmRSS"))


def cpu_seconds(pids: list[int]) -> float:
    """Return the summed CPU seconds of the processes that still exist."""
    total = 0.0
    for pid in pids:
        sample = sample_process(pid)
        if sample is not None:
            total += sample.cpu_seconds
    return total


class CpuMeter:
    """CPU seconds used by a fixed set of processes between start() and stop().

    Processes that exit in between are counted up to their last sample, so
    call sample() now and then for processes that may exit early.
    """

    def __init__(self, pids: list[int]):
        self.pids = list(pids)
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.started = 0.0
        self.elapsed = 0.0

    def start(self) -> "CpuMeter":
        self.started = time.monotonic()
        for pid in self.pids:
            sample = sample_process(pid)
            if sample is not None:
                self.first[pid] = self.last[pid] = sample.cpu_seconds
        return self

    def sample(self) -> None:
        for pid in self.first:
            sample = sample_process(pid)
            if sample is not None:
                self.last[pid] = sample.cpu_seconds

    def stop(self) -> float:
        """Return the CPU seconds used since start()."""
        self.sample()
        self.elapsed = time.monotonic() - self.started
        return sum(self.last[pid] - self.first[pid] for pid in self.first)
