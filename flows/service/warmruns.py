"""Warm flow-run processes: a fork server the runner's flow runs start from.

A served flow run is normally a fresh ``python -m prefect.engine``: importing Prefect and the
engine, loading touchpoints.yaml, opening the store and compiling the flow take seconds of CPU
before the first step begins. The runner process has done all of that already, so before it
starts serving it forks a *fork server* (:func:`start`): a copy of itself, still single-threaded,
that listens on a Unix socket and forks one child per flow run.

The runner still launches a normal process per run: a tiny launcher
(``python -m flows.service.runlauncher``, no third-party import) that hands its environment,
working folder and standard streams to the fork server, and then stands in for the forked child:
it forwards every signal it gets (Prefect's SIGTERM on cancel, serve's SIGTERM on stop), and
exits with the child's exit code, or dies of the child's signal. So Prefect sees an ordinary
child process, and a run killed with ``kill -9`` ends Crashed as before.

Lifetimes, so `serve`'s stop and kill promises hold:

* the fork server dies with the runner (PR_SET_PDEATHSIG=SIGKILL), each forked run dies with the
  fork server (the same), so a SIGKILLed serve takes every sender with it at once;
* a launcher that dies (SIGKILLed by Prefect or with the runner's process group) takes its run
  with it: the fork server sees the launcher's socket close and SIGKILLs the run;
* the fork server has a session of its own, so a signal to the runner's process group reaches a
  run once, through its launcher, never twice.

When the fork server cannot be reached, or it is not safe to fork (a thread has started), the
launcher runs ``python -m prefect.engine`` in its own place: slower, never wrong.
``TOUCHPOINTS_WARM_RUNS=0`` turns the whole thing off.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import threading
from pathlib import Path

log = logging.getLogger("touchpoints.service")

#: where the runner tells its flow runs' launchers to find the fork server
SOCKET_ENV = "TOUCHPOINTS_RUN_SOCKET"
SWITCH_ENV = "TOUCHPOINTS_WARM_RUNS"
_HEADER = struct.Struct("!I")
_MAX_REQUEST = 4 * 1024 * 1024


def enabled(environ=os.environ) -> bool:
    return environ.get(SWITCH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def launcher_command() -> str:
    """The command the runner starts for each flow run instead of ``python -m prefect.engine``."""
    import shlex

    return shlex.join([sys.executable, "-m", "flows.service.runlauncher"])


def use_launcher() -> None:
    """Make the Prefect runner start each flow run through the launcher: its engine-command
    starter takes a ``command`` (``python -m prefect.engine`` when none is given); the runner
    gives none, so the launcher becomes the default."""
    from prefect.runner import runner as prefect_runner
    from prefect.runner._starter_engine import EngineCommandStarter

    if getattr(prefect_runner.EngineCommandStarter, "_touchpoints_warm", False):
        return
    command = launcher_command()

    class WarmEngineCommandStarter(EngineCommandStarter):
        _touchpoints_warm = True

        def __init__(self, **options) -> None:
            if options.get("command") is None:
                options["command"] = command
            super().__init__(**options)

    prefect_runner.EngineCommandStarter = WarmEngineCommandStarter


# ---------------------------------------------------------------------- the runner's side
#: what a flow run imports after its flow is loaded (found by profiling one): imported here
#: once, not in every run; a name missing from a later Prefect is skipped
RUN_MODULES = ("prefect.task_engine", "prefect.utilities.visualization", "prefect.artifacts",
               "prefect.concurrency._asyncio", "prefect.concurrency.sync", "smtplib",
               "email.policy", "email.headerregistry")
#: our packages a run uses, imported whole
RUN_PACKAGES = ("flows.engine", "flows.steps", "flows.mail", "flows.store")


def preload(engine) -> None:
    """Load what a flow run process would: Prefect's engine modules, our engine, every
    compiled flow and every template (compiled, in the renderer's cache)."""
    import importlib
    import pkgutil

    import prefect.engine
    import prefect.flow_engine  # noqa: F401

    import flows.reports.weekly  # noqa: F401  (the served weekly report's entrypoint)
    from flows.engine import entry

    names = list(RUN_MODULES)
    for package in RUN_PACKAGES:
        path = importlib.import_module(package).__path__
        names += [info.name for info in pkgutil.walk_packages(path, package + ".")]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001  (a run imports it itself, or fails there)
            log.debug("not preloaded: %s (%s)", name, exc)
    for touchpoint in engine.config.touchpoints.values():
        if touchpoint.enabled:
            getattr(entry, entry.ident(touchpoint.name))
    renderer, root = engine.renderer, Path(engine.renderer.templates_dir)
    for template in sorted(root.rglob("*")) if root.is_dir() else []:
        if template.is_file() and template.suffix in (".txt", ".html"):
            try:
                renderer.env.get_template(template.relative_to(root).as_posix())
            except Exception as exc:  # noqa: BLE001  (the run reports a broken template)
                log.debug("template not preloaded: %s (%s)", template, exc)


def start(engine) -> int | None:
    """Fork the fork server from this (the runner's) process, with every flow loaded, and point
    the flow runs' launchers at it through the environment; its pid, or None when this process
    is not safe to fork."""
    if threading.active_count() != 1:
        log.warning("warm flow runs are off: the runner has %s threads before serving; each "
                    "run starts a fresh Python", threading.active_count())
        return None
    engine.store.dispose()  # no connection crosses a fork
    return fork_server(config_stamp=_stamp(engine.settings.config_file))


def fork_server(*, module: str = "prefect.engine", config_stamp: tuple = ()) -> int:
    """Fork a fork server whose children run ``module`` as ``python -m`` would; sets
    SOCKET_ENV in this process's environment (its children, the launchers, inherit it)."""
    name = f"touchpoints-runs-{os.getpid()}-{os.urandom(8).hex()}"  # abstract: no file
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(64)
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the fork server
        try:
            os.setsid()
            from flows.engine.entry import die_with_parent

            die_with_parent()
            if os.getppid() != parent:  # the runner died before we could ask
                os._exit(1)
            job = ForkServer(listener, module=module, config_stamp=config_stamp).serve()
        except BaseException:  # noqa: BLE001  (reported, then the fork server ends)
            import traceback

            traceback.print_exc()
            os._exit(1)
        sys.exit(job.run())  # only a forked flow run gets here
    listener.close()
    os.environ[SOCKET_ENV] = "@" + name  # "@" stands for the abstract namespace's NUL
    return pid


def _stamp(path: Path) -> tuple:
    try:
        status = Path(path).stat()
        return (status.st_mtime_ns, status.st_size, status.st_ino)
    except OSError:
        return ()


# ---------------------------------------------------------------------- the fork server
class ForkServer:
    """Accepts launchers, forks a child per run, reports each child's end to its launcher."""

    def __init__(self, listener: socket.socket, *, module: str, config_stamp: tuple) -> None:
        self.listener = listener
        self.module, self.config_stamp = module, config_stamp
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket] = {}  # pid -> its launcher's connection
        self.by_conn: dict[socket.socket, int] = {}
        self.wakeup_r, self.wakeup_w = socket.socketpair()

    def serve(self) -> RunJob:
        """Serve until killed; returns only in a forked child, with the run to execute."""
        for sig in (signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._terminate)
        self.wakeup_r.setblocking(False)
        self.wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self.wakeup_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the fd
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "wakeup")
        while True:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "accept":
                    job = self._accept()
                    if job is not None:
                        return job
                elif key.data == "wakeup":
                    try:
                        self.wakeup_r.recv(4096)
                    except BlockingIOError:
                        pass
                else:
                    self._launcher_gone(key.fileobj)
            self._reap()

    def _terminate(self, signum, frame) -> None:
        for pid in list(self.children):
            _kill(pid, signal.SIGKILL)
        os._exit(0)

    def _accept(self) -> RunJob | None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return None
        try:
            uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                      struct.calcsize("3i")))[1]
            if uid != os.getuid():
                conn.close()
                return None
            conn.settimeout(10)
            request, fds = _read_request(conn)
        except (OSError, ValueError) as exc:
            log.warning("a flow-run launcher's request was unreadable: %s", exc)
            conn.close()
            return None
        if threading.active_count() != 1:  # never fork a process with threads
            _reply(conn, "refused threads")
            conn.close()
            _close_all(fds)
            return None
        pid = os.fork()
        if pid == 0:
            return self._become_run(conn, request, fds)
        _close_all(fds)
        conn.settimeout(None)
        try:
            _reply(conn, f"pid {pid}")
        except OSError:
            _kill(pid, signal.SIGKILL)
        self.children[pid] = conn
        self.by_conn[conn] = pid
        self.selector.register(conn, selectors.EVENT_READ, "launcher")
        return None

    def _become_run(self, conn, request: dict, fds: list[int]) -> RunJob:
        server = os.getppid()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from flows.engine.entry import die_with_parent

        die_with_parent()  # cleared by fork: a run dies with the fork server
        if os.getppid() != server:
            os._exit(1)
        self.selector.close()
        for sock in (self.listener, self.wakeup_r, self.wakeup_w, conn, *self.by_conn):
            sock.close()
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        _close_all([fd for fd in fds if fd > 2])
        return RunJob(request, module=self.module, config_stamp=self.config_stamp)

    def _launcher_gone(self, conn) -> None:
        """A launcher's socket is readable only when it closed: its run goes with it."""
        pid = self.by_conn.pop(conn, None)
        self.selector.unregister(conn)
        conn.close()
        if pid is not None:
            self.children.pop(pid, None)
            _kill(pid, signal.SIGKILL)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            self.by_conn.pop(conn, None)
            self.selector.unregister(conn)
            try:
                _reply(conn, f"exit {status}")
            except OSError:
                pass
            conn.close()


class RunJob:
    """In a forked child: ``python -m <module>`` (``prefect.engine``) with the launcher's
    environment, working folder and arguments."""

    def __init__(self, request: dict, *, module: str, config_stamp: tuple) -> None:
        self.request, self.module, self.config_stamp = request, module, config_stamp

    def run(self) -> int:
        import runpy
        import warnings

        os.environ.clear()
        os.environ.update(self.request["env"])
        try:
            os.chdir(self.request.get("cwd") or "/")
        except OSError:
            pass
        if "prefect.context" in sys.modules:
            from prefect.context import refresh_global_settings_context

            refresh_global_settings_context()  # Prefect's settings from this run's environment
        if self.config_stamp:
            self._forget_what_changed()
        sys.argv = [self.module, *self.request.get("args", [])]
        # imported already (that is the point): runpy runs it as __main__ all the same
        warnings.filterwarnings("ignore", category=RuntimeWarning,
                                message=f"'{self.module}' found in sys.modules")
        runpy.run_module(self.module, run_name="__main__", alter_sys=True)
        return 0

    def _forget_what_changed(self) -> None:
        """A run loads touchpoints.yaml as it is now, as a fresh process would: when the file or
        the settings changed since the fork server loaded them, the flows compile again."""
        from flows.settings import get_settings, reset_settings

        loaded = get_settings()
        reset_settings()
        if get_settings() != loaded or _stamp(get_settings().config_file) != self.config_stamp:
            from flows.engine.compiler import forget_compiled
            from flows.engine.core import set_engine

            forget_compiled()
            set_engine(None)


# ---------------------------------------------------------------------- the wire
def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """A request is a 4-byte length with the launcher's stdin, stdout and stderr attached,
    then that many bytes of JSON: {"env": {...}, "cwd": "...", "args": [...]}."""
    header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
    if len(header) != _HEADER.size or len(fds) != 3:
        _close_all(fds)
        raise ValueError("no header and standard streams")
    (size,) = _HEADER.unpack(header)
    if size > _MAX_REQUEST:
        _close_all(fds)
        raise ValueError(f"a request of {size} bytes")
    body = bytearray()
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            _close_all(fds)
            raise ValueError("the request was cut short")
        body += chunk
    return json.loads(body), fds


def _reply(conn: socket.socket, line: str) -> None:
    conn.sendall(line.encode() + b"\n")


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
