"""The process the runner starts for each flow run when warm runs are on (flows/service/warmruns.py).

It asks the fork server for a warm child that runs the flow run, then stands in for it: every
signal it gets is passed on, and it ends the way the child ended (its exit code, or killed by
its signal). If it dies, the fork server kills the child. Without a fork server it becomes
``python -m prefect.engine`` itself. Standard library only: it must start in milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the runner died before we could ask
        os._exit(1)


def _cold(why: str | None = None) -> None:
    """Run the flow run the ordinary way, in this very process."""
    if why:
        print(f"touchpoints: this flow run starts cold ({why})", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *sys.argv[1:]])


def _connect(address: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect("\0" + address[1:] if address.startswith("@") else address)
    except OSError:
        sock.close()
        return None
    return sock


def main() -> int:
    _die_with_parent()
    address = os.environ.get("TOUCHPOINTS_RUN_SOCKET")
    sock = _connect(address) if address else None
    if sock is None:
        _cold("the fork server does not answer" if address else None)
    child: list[int] = []
    pending: list[int] = []

    def forward(signum, frame) -> None:
        if child:
            try:
                os.kill(child[0], signum)
            except ProcessLookupError:
                pass
        else:
            pending.append(signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    body = json.dumps({"env": dict(os.environ), "cwd": os.getcwd(),
                       "args": sys.argv[1:]}).encode()
    try:
        socket.send_fds(sock, [struct.pack("!I", len(body))], [0, 1, 2])
        sock.sendall(body)
        reader = sock.makefile("rb")
        first = reader.readline().decode().split()
    except OSError:
        first = []
    if not first or first[0] != "pid":  # refused or gone before forking: the ordinary way
        sock.close()
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        if pending:
            os.kill(os.getpid(), pending[0])
        _cold(f"the fork server said {' '.join(first) or 'nothing'}")
    child.append(int(first[1]))
    for signum in pending:
        forward(signum, None)
    try:
        last = reader.readline().decode().split()
    except OSError:
        last = []
    if len(last) != 2 or last[0] != "exit":  # the fork server died, and its runs with it
        return _end_by_signal(signal.SIGKILL)
    status = int(last[1])
    if os.WIFSIGNALED(status):
        return _end_by_signal(os.WTERMSIG(status))
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def _end_by_signal(signum: int) -> int:
    """Die of the child's signal, so the runner reads the same exit status."""
    sys.stdout.flush()
    sys.stderr.flush()
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
