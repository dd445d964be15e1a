"""Child processes of the tests: start each in its own process group with its
output in a log file, stop the whole group at teardown, wait for readiness.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

# Every process started through ManagedProcess, so that the report hook in
# conftest.py can attach the tails of their logs to a failed test.
STARTED: list["ManagedProcess"] = []


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], object],
    timeout: float,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
) -> object:
    """Call condition until it returns a truthy value and return that value.

    Raises AssertionError naming `message` when `timeout` seconds pass first.
    Exceptions raised by condition propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {text}")
        time.sleep(interval)


def tail(path: Path, max_lines: int = 150) -> str:
    """Return the last max_lines lines of a text file, or a note if it is missing."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - 256 * 1024))
            data = file.read()
    except FileNotFoundError:
        return f"(no file {path})"
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-max_lines:])


class ManagedProcess:
    """A child process in its own session and process group, logging to a file.

    The process group makes teardown reliable: stop() signals the whole group,
    so helpers the child forks die with it unless they move to a new group.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ):
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.started_at = time.time()
        self.stopped_at = None
        STARTED.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def signal(self, signum: int) -> None:
        """Send signum to the main process only (not its group)."""
        if self.alive():
            os.kill(self.pid, signum)

    def kill9(self) -> None:
        """Kill the main process with SIGKILL, leaving its group alone, and reap it."""
        if self.popen is None:
            return
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        self.stopped_at = time.time()

    def stop(self, grace: float = 10.0) -> None:
        """Stop the process group: SIGTERM, then SIGKILL after `grace` seconds."""
        if self.popen is None:
            return
        pgid = self.popen.pid  # start_new_session makes the child its group leader
        for signum, wait in ((signal.SIGCONT, 0), (signal.SIGTERM, grace), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, signum)
            except ProcessLookupError:
                break
            if wait:
                try:
                    self.popen.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # The group may outlive its leader; make sure nothing of it is left.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.popen.poll() is None:
            self.popen.wait(timeout=10)
        self.stopped_at = time.time()

    def log_tail(self, max_lines: int = 150) -> str:
        return tail(self.log_path, max_lines)


def kill_pid(pid: int, signum: int = signal.SIGKILL) -> bool:
    """Send signum to one process by id; return False if it no longer exists."""
    try:
        os.kill(pid, signum)
        return True
    except ProcessLookupError:
        return False


def pid_alive(pid: int) -> bool:
    """Return whether pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state field follows the parenthesised command name.
    state = stat.rsplit(b")", 1)[1].split()[0]
    return state not in (b"Z", b"X")


def process_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            raw = file.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode("utf-8", errors="replace") for part in raw.split(b"\0") if part]


def find_processes(predicate: Callable[[list[str]], bool]) -> list[int]:
    """Return the ids of live processes whose argv satisfies predicate."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        argv = process_cmdline(pid)
        if argv and predicate(argv) and pid_alive(pid):
            pids.append(pid)
    return sorted(pids)


def rss_bytes(pid: int) -> int | None:
    """Return the resident set size of pid from /proc/PID/status, or None if gone."""
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None
