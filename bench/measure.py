"""What the benchmarks measure with: a real Prefect server in a subprocess, CPU seconds of a set
of process trees (psutil), the machine's load, and a description of the machine."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import psutil


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, its reaped children, and its live descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def own_cpu(pid: int) -> float:
    """User + system CPU seconds of one process alone (not its children)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return t.user + t.system


class CpuMeter:
    """CPU seconds of named process trees between ``start()`` and ``stop()``; names in
    ``alone`` count that process without its children (the benchmark's own process, whose
    children are the other processes measured)."""

    def __init__(self, pids: dict[str, int], *, alone: tuple[str, ...] = ()) -> None:
        self.pids, self.alone = pids, alone
        self._start: dict[str, float] = {}

    def snapshot(self) -> dict[str, float]:
        return {name: own_cpu(pid) if name in self.alone else tree_cpu(pid)
                for name, pid in self.pids.items()}

    def start(self) -> None:
        self._start = self.snapshot()

    def stop(self) -> dict[str, float]:
        now = self.snapshot()
        return {name: round(now[name] - self._start.get(name, 0.0), 2) for name in now}


def idle_rate(pid: int, *, seconds: float = 2.0) -> float:
    """CPU seconds per second a process tree spends with nothing asked of it (an idle Prefect
    server polls its own services: 0.01-0.09 here, depending on the machine's load)."""
    before = tree_cpu(pid)
    time.sleep(seconds)
    return max(0.0, (tree_cpu(pid) - before) / seconds)


def settle(pid: int, *, quiet: float = 0.05, idle: float = 0.0, every: float = 1.0,
           timeout: float = 300.0) -> float:
    """Wait until a process tree is idle (less than ``quiet`` CPU seconds over ``every``
    seconds above its ``idle`` rate, see :func:`idle_rate`): the Prefect server records task
    runs from events after the fact. Returns the seconds waited."""
    quiet += idle * every
    started = time.monotonic()
    last = tree_cpu(pid)
    while time.monotonic() - started < timeout:
        time.sleep(every)
        now = tree_cpu(pid)
        if now - last < quiet:
            return time.monotonic() - started
        last = now
    return time.monotonic() - started


class PrefectServer:
    """``prefect server start`` in a subprocess, with its own PREFECT_HOME (so its own SQLite
    database) on a free port. ``pid`` is the server's process; its children count too."""

    def __init__(self, home: Path, *, log: Path) -> None:
        self.home, self.log = home, log
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"PREFECT_HOME": str(self.home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_UI_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"})
        env.pop("PREFECT_API_URL", None)
        return env

    def start(self, timeout: float = 240.0) -> float:
        import httpx

        self.home.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log, "ab") as handle:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                 "--port", str(self.port)], env=self.env(), stdout=handle,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Prefect server exited with {self.proc.returncode}; "
                                   f"see {self.log}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Prefect server did not answer in {timeout:.0f}s; see {self.log}")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the server's own process group (it started one), by its PID."""
        import signal

        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def machine() -> dict[str, str]:
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": cpu,
            "memory_gb": f"{psutil.virtual_memory().total / 2**30:.1f}",
            "os": platform.platform(terse=True), "python": platform.python_version(),
            "prefect": version("prefect"), "sqlalchemy": version("sqlalchemy"),
            "aiosmtpd": version("aiosmtpd")}


def markdown(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |"
             for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)
