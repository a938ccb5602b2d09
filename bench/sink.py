"""The benchmark's SMTP sink: a real aiosmtpd server in a process of its own.

Run by the benchmark as ``python bench/sink.py``: it binds 127.0.0.1 on a free port, prints
``{"port": ...}`` on its first line, then answers one command per line on stdin with one JSON
line on stdout:

* ``stats``  messages and connections counted since the last reset, distinct recipients, and
  the wall-clock times (``time.time()``) of the first and the last message;
* ``reset``  forget the counts (warm-up mail is not measured);
* ``quit``   stop.

A message counts when its DATA is accepted (``250``), so a count is what really arrived.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

HERE = Path(__file__).resolve().parent


class Counter:
    """The aiosmtpd handler: counts accepted messages, connections and recipients."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.messages = 0
            self.connections = 0
            self.recipients: set[str] = set()
            self.first_at: float | None = None
            self.last_at: float | None = None

    def connected(self) -> None:
        with self.lock:
            self.connections += 1

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if not envelope.content:
            return "554 5.6.0 empty message"
        now = time.time()
        with self.lock:
            self.messages += 1
            self.recipients.update(r.lower() for r in envelope.rcpt_tos)
            if self.first_at is None:
                self.first_at = now
            self.last_at = now
        return "250 2.0.0 Message accepted"

    def stats(self) -> dict:
        with self.lock:
            return {"messages": self.messages, "connections": self.connections,
                    "distinct_recipients": len(self.recipients), "first_at": self.first_at,
                    "last_at": self.last_at}


def serve() -> int:
    from aiosmtpd.controller import Controller

    counter = Counter()

    class Counting(Controller):
        def factory(self):  # one protocol instance per accepted connection
            counter.connected()
            return super().factory()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Counting(counter, hostname="127.0.0.1", port=port, server_hostname="bench-sink",
                          data_size_limit=10 * 1024 * 1024)
    controller.start()
    counter.reset()  # start() connects once to check the server is up: not a client's
    print(json.dumps({"port": port}), flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "reset":
                counter.reset()
                print(json.dumps({"ok": True}), flush=True)
            elif command == "stats":
                print(json.dumps(counter.stats()), flush=True)
            elif command == "quit":
                break
            elif command:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    finally:
        controller.stop(no_assert=True)
    return 0


class Sink:
    """The parent's handle on the sink process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "sink.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        first = self.proc.stdout.readline()
        if not first:
            raise RuntimeError("the SMTP sink did not start")
        self.port = json.loads(first)["port"]
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def _ask(self, command: str) -> dict:
        with self._lock:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"the SMTP sink stopped (exit code {self.proc.poll()})")
        return json.loads(answer)

    def stats(self) -> dict:
        return self._ask("stats")

    def reset(self) -> None:
        self._ask("reset")

    def wait_for(self, count: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while stats["messages"] < count and time.monotonic() < deadline:
            time.sleep(0.2)
            stats = self.stats()
        return stats

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(serve())
