"""`touchpoints serve`: start and supervise the Prefect server, the runner (or a work-pool
worker), the web app, the mail catcher and the housekeeping loops, for the roles this instance
has (flows/service/topology.py). Ctrl-C stops everything; a part that dies stops the whole
service with a non-zero exit, so it never runs half-alive; a loop that fails is retried with
back-off instead."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from flows.errors import ServiceError
from flows.service.processes import ChildProcess, python_module, wait_http
from flows.service.topology import prefect_server_env
from flows.service.zombies import heartbeat_env
from flows.settings import Settings

log = logging.getLogger("touchpoints.service")
HOUSEKEEPING_SECONDS = 5.0
#: how often queued units are launched and dead ones looked for
DRIVE_SECONDS = 0.25
#: the longest back-off after repeated failures of a loop (the loop never gives up)
MAX_BACKOFF_SECONDS = 30.0


@dataclass
class ServiceState:
    web_url: str | None
    prefect_url: str
    catcher: str | None
    api_key: str
    logs: str
    children: dict[str, int] = field(default_factory=dict)


class _Thread(threading.Thread):
    def __init__(self, name: str, target) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # reported by the supervisor
            self.error = exc


def prefect_first_start_note(settings) -> str:
    """What to add to "starting the Prefect server": only an embedded server whose database
    does not exist yet has to create and migrate it (which takes a while)."""
    if settings.prefect_database_url or os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL"):
        return ""
    database = settings.prefect_home / "prefect.db"  # where an embedded Prefect server keeps it
    return "" if database.exists() else " (first start: it creates and migrates its database)"


class Supervisor:
    def __init__(self, settings: Settings, *, say=print, roles: str | None = None) -> None:
        from flows.service.topology import topology

        self.settings = settings
        self.topology = topology(settings, roles)
        self.lock = None
        self.say = say
        self.stopping = threading.Event()
        self.children: list[ChildProcess] = []
        self.threads: list[_Thread] = []
        self.catcher = None
        self.web_server = None
        self.state: ServiceState | None = None
        self.logs = settings.data_dir.resolve() / "logs"
        self.external_prefect = os.environ.get("PREFECT_API_URL")

    # ------------------------------------------------------------------ start
    def _child_env(self, prefect_api: str | None) -> dict[str, str]:
        env = dict(os.environ)
        env["PREFECT_HOME"] = str(self.settings.prefect_home.resolve())
        env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        env.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "1")  # due runs start within a second
        env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")  # the same for pool workers
        for name, value in heartbeat_env().items():  # runs say they are alive (zombies.py)
            env.setdefault(name, value)
        env["TOUCHPOINTS_DATA_DIR"] = str(self.settings.data_dir.resolve())
        env["TOUCHPOINTS_CONFIG_FILE"] = str(self.settings.config_file.resolve())
        if prefect_api:
            env["PREFECT_API_URL"] = prefect_api
        return env

    def _start_prefect(self) -> str:
        if self.external_prefect:
            api = self.external_prefect.rstrip("/")
            if not wait_http(f"{api}/health", timeout=30):
                raise ServiceError(f"the Prefect server at {api} does not answer",
                                   hint="unset PREFECT_API_URL to let serve start its own")
            return api
        port = self.settings.prefect_port
        server = ChildProcess("prefect server", python_module(
            "prefect", "server", "start", "--host", self.settings.prefect_host, "--port", str(port)),
            env={**self._child_env(None), **prefect_server_env(self.settings)},
            log=self.logs / "prefect-server.log")
        server.start()
        self.children.append(server)
        host = self.settings.prefect_host
        api = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/api"
        self.say(f"starting the Prefect server on {self.settings.prefect_host}:{port}"
                 f"{prefect_first_start_note(self.settings)}…")
        if not wait_http(f"{api}/health", timeout=180, alive=server.alive):
            raise ServiceError("the Prefect server did not start", hint=f"see {server.log}:\n{server.tail()}")
        return api

    def _start_web(self, engine) -> str:
        import uvicorn

        from flows.engine.dispatch import Dispatcher
        from flows.service.deployments import DeploymentLauncher
        from flows.web.app import create_app

        # the intake is an outbox: events and their units are stored, Prefect is not called
        app = create_app(engine, Dispatcher(engine, DeploymentLauncher(), outbox=True))
        config = uvicorn.Config(app, host=self.settings.web_host, port=self.settings.web_port,
                                log_level="warning", access_log=False, lifespan="on")
        self.web_server = uvicorn.Server(config)
        self.web_server.install_signal_handlers = lambda: None  # the supervisor owns signals
        thread = _Thread("web", self.web_server.run)
        thread.start()
        self.threads.append(thread)
        url = f"http://{self.settings.web_host}:{self.settings.web_port}"
        if not wait_http(f"{url}/healthz", timeout=30, alive=thread.is_alive):
            raise ServiceError(f"the web app did not start on {url}",
                               hint=f"is port {self.settings.web_port} taken? set TOUCHPOINTS_WEB_PORT")
        return url

    def _loop(self, engine, part: str, every: float, work) -> None:
        """Run ``work`` every ``every`` seconds until serve stops. A failure (a locked database,
        an exhausted pool, Prefect busy) is retried with back-off and shows in /healthz; it
        never stops the service."""
        failures = 0
        wait = 0.0
        while not self.stopping.wait(wait):
            try:
                work()
                failures, wait = 0, every
                engine.health[part] = {"ok": True, "failures": 0}
            except Exception as exc:
                failures += 1
                wait = min(MAX_BACKOFF_SECONDS, every * 2 ** min(failures, 8))
                engine.health[part] = {"ok": False, "failures": failures,
                                       "error": f"{type(exc).__name__}: {exc}"[:300],
                                       "retry_in_s": round(wait, 1)}
                log.warning("%s failed (%s in a row, retrying in %.1fs): %s", part, failures,
                            wait, exc)

    def _start_loops(self, engine) -> None:
        from flows.service.deployments import DeploymentLauncher
        from flows.service.housekeeping import Housekeeper
        from flows.service.lock import HousekeepingLock

        self.keeper = Housekeeper(engine, DeploymentLauncher())
        self.lock = HousekeepingLock(engine.store)
        for part, every, work in (("housekeeping", HOUSEKEEPING_SECONDS, self.keeper.triggers),
                                  ("dispatch", DRIVE_SECONDS, self.keeper.drive)):
            work = self._once_across_instances(engine, part, work)
            thread = _Thread(part, lambda p=part, e=every, w=work: self._loop(engine, p, e, w))
            thread.start()
            self.threads.append(thread)
        from flows.service.checkpoints import Checkpointer

        self.checkpointer = Checkpointer(engine.store, self.settings)  # each instance: its own
        part, every, work = self.checkpointer.loop_entry()
        self.threads.append(_Thread(part, lambda: self._loop(engine, part, every, work)))
        self.threads[-1].start()

    def _once_across_instances(self, engine, part: str, work):
        """Housekeeping runs where the lock is held; elsewhere it stands by (shown in /healthz)
        and takes over at its next try when the holder goes."""
        def guarded():
            if not self.lock.held():
                engine.health[part] = {"ok": True, "standby": True}
                return None
            return work()

        return guarded

    def _start_worker(self, engine, api: str) -> None:
        """Flow runs: a Prefect process worker on the work pool, or (one machine, no pool) a
        runner serving every touch point in this process group."""
        env = {**self._child_env(api), "TOUCHPOINTS_SERVED": "1"}
        stamp = engine.store.schema_stamp()  # migrated at start: its runs need not check again
        if stamp:
            from flows.store.db import SCHEMA_HEAD_ENV

            env[SCHEMA_HEAD_ENV] = stamp
        pool = self.topology.work_pool
        if pool:
            import socket

            from flows.service.pools import ensure_pool, worker_args

            ensure_pool(pool)
            worker = ChildProcess("worker", worker_args(
                pool, limit=self.settings.worker_limit,
                name=f"touchpoints-{socket.gethostname()}-{os.getpid()}"),
                env=env, log=self.logs / "worker.log")
            worker.start()
            self.children.append(worker)
            self._wait_for_deployments(engine, worker)
            return
        env.setdefault("TOUCHPOINTS_RUN_LIMIT", str(self.settings.worker_limit))
        runner = ChildProcess("runner", python_module("flows.service.runner"),
                              env=env, log=self.logs / "runner.log")
        runner.start()
        self.children.append(runner)
        self._wait_for_deployments(engine, runner)

    def _zombie_detection(self) -> None:
        """Prefect's automation that sets a run Crashed when its heartbeats stop; a Prefect
        server that refuses it leaves serve running on the store's leases alone."""
        from flows.service.zombies import ensure_automation_sync

        try:
            if ensure_automation_sync():
                log.info("created the Prefect automation that crashes silent runs")
        except Exception as exc:  # noqa: BLE001 - the leases still re-drive dead runs
            self.say(f"warning: could not set up Prefect's zombie detection ({exc}); dead "
                     "runs are still re-driven from the store's leases")

    def _deploy(self, engine) -> None:
        """With a work pool, an intake or housekeeping instance registers the touch points at
        start (updating them in place), so a changed touchpoints.yaml is what workers run."""
        from flows.service.pools import deploy

        names = deploy(engine, self.topology.work_pool)
        self.say(f"deployed {len(names)} touch point(s) to the work pool {self.topology.work_pool}")

    def _wait_for_deployments(self, engine, runner: ChildProcess, timeout: float = 180) -> None:
        """Ready means every touch point's deployment is registered: only then can events start
        journeys."""
        import asyncio

        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        from flows.service.deployments import deployment_name

        names = [deployment_name(tp.name) for tp in engine.config.touchpoints.values() if tp.enabled]

        async def missing() -> list[str]:
            async with get_client() as client:
                absent = []
                for name in names:
                    try:
                        await client.read_deployment_by_name(name)
                    except ObjectNotFound:
                        absent.append(name)
                return absent

        deadline = time.monotonic() + timeout
        absent = names
        while time.monotonic() < deadline:
            if not runner.alive():
                raise ServiceError(f"the {runner.name} stopped while the touch points were "
                                   "being registered",
                                   hint=f"see {runner.log}:\n{runner.tail()}")
            absent = asyncio.run(missing())
            if not absent:
                return
            time.sleep(1)
        hint = (f"run `touchpoints deploy` against this Prefect server; see {runner.log}"
                if self.topology.work_pool else f"see {runner.log}")
        raise ServiceError(f"{', '.join(absent)} not registered after {timeout:.0f}s", hint=hint)

    def _api_key(self, engine) -> str:
        """A key for local commands (`touchpoints emit`), kept in serve.json, revoked on stop."""
        from flows.keys import create_key

        with engine.store.session() as session:
            self._key_id, key, _ = create_key(session, f"serve-{os.getpid()}", actor="system")
        return key

    def _revoke_key(self) -> None:
        if not getattr(self, "_key_id", None):
            return
        from flows.engine.core import current_engine
        from flows.keys import revoke_key

        try:
            with current_engine().store.session() as session:
                revoke_key(session, self._key_id, actor="system", reason="serve stopped")
        except Exception as exc:  # stopping must not fail over a key
            log.warning("could not revoke the serve key %s: %s", self._key_id, exc)

    def start(self) -> ServiceState:
        from flows.cli.remote import ServiceInfo, find_service, write_service_info
        from flows.engine.core import current_engine
        from flows.service.demo import guard_clock

        guard_clock(self.settings.data_dir)
        running = find_service(self.settings)
        if running is not None and running.pid != os.getpid():
            raise ServiceError(f"touchpoints serve is already running (pid {running.pid}) at {running.web_url}",
                               hint="stop it first (Ctrl-C in its terminal, or kill that pid)")
        roles = self.topology
        if not roles.everything:
            self.say(f"this instance: {roles.describe()}")
        api = self._start_prefect()
        os.environ["PREFECT_API_URL"] = api
        engine = current_engine()
        from flows.engine.inflight import say_in_flight  # journeys an edit affects

        say_in_flight(engine, self.say)
        self._zombie_detection()
        catcher_url = None
        if self.settings.embedded_mail:
            from flows.mail.catcher import Catcher

            self.catcher = Catcher(self.settings)
            self.catcher.start()
            catcher_url = f"smtp://127.0.0.1:{self.settings.catcher_port}"
        if roles.work_pool and (roles.has("web") or roles.has("housekeeping")):
            self._deploy(engine)
        if roles.has("worker"):
            self._start_worker(engine, api)
        web_url = self._start_web(engine) if roles.has("web") else None
        if roles.has("housekeeping"):
            self._start_loops(engine)
        ui = api.removesuffix("/api")
        key = ""
        if web_url:
            key = self._api_key(engine)
            write_service_info(self.settings, ServiceInfo(
                pid=os.getpid(), web_url=web_url, prefect_url=ui, api_key=key,
                started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                extra={"children": {c.name: c.pid for c in self.children},
                       "roles": sorted(roles.roles)}))
        self.state = ServiceState(web_url=web_url, prefect_url=ui, catcher=catcher_url, api_key=key,
                                  logs=str(self.logs),
                                  children={c.name: c.pid for c in self.children})
        return self.state

    # ------------------------------------------------------------------ supervise
    def failed_part(self) -> str | None:
        for child in self.children:
            if not child.alive():
                return f"{child.name} exited with code {child.exit_code()}; its log:\n{child.tail()}"
        for thread in self.threads:
            if not thread.is_alive():
                return f"{thread.name} stopped: {thread.error!r}"
        return None

    def supervise(self) -> int:
        def _stop(signum, frame):
            self.stopping.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        while not self.stopping.wait(1.0):
            failure = self.failed_part()
            if failure:
                self.say(f"touchpoints serve: a part died, stopping everything: {failure}")
                self.stop()
                return 1
        self.stop()
        return 0

    def stop(self) -> None:
        """Intake first, then the loops, then the runner; runs it left Pending or Running end
        as Crashed and their units wait for the next start; the Prefect server goes last."""
        from flows.cli.remote import remove_service_info

        self.stopping.set()
        if self.web_server is not None:
            self.web_server.should_exit = True
        for thread in self.threads:
            thread.join(timeout=10)
        server = [c for c in self.children if c.name == "prefect server"]
        for child in reversed(self.children):
            if child not in server:
                child.stop()
        keeper = getattr(self, "keeper", None)
        if keeper is not None:
            try:
                settled = keeper.driver.settle_on_stop()
                if settled:
                    log.info("%s run(s) still in flight ended as Crashed; they resume at the "
                             "next start", settled)
            except Exception as exc:  # the server may be gone already (a dying part)
                log.warning("could not settle the runs in flight: %s", exc)
        if self.lock is not None:
            self.lock.release()
        for child in server:
            child.stop()
        if self.catcher is not None:
            self.catcher.stop()
        self._revoke_key()
        if getattr(self, "checkpointer", None) is not None:  # after the last audit row
            self.checkpointer.final()
        remove_service_info(self.settings, os.getpid())
