"""`touchpoints serve` anchors the audit trail: its checkpoint loop writes a signed checkpoint at
once and then every TOUCHPOINTS_AUDIT_CHECKPOINT_SECONDS, a failing sink never stops it, and the
stop sequence writes one after its last audit row (and never fails over it)."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

from flows.service.checkpoints import PART, Checkpointer
from flows.service.supervisor import Supervisor
from flows.store import audit, checkpoints


def add_rows(store, count: int) -> None:
    with store.session() as session:
        audit.record_many(session, [{"action": "email.sent", "result": "sent",
                                     "actor": audit.SYSTEM} for _ in range(count)])


def written(settings) -> list[dict]:
    path = checkpoints.checkpoint_path(settings)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_loop_writes_a_checkpoint_at_once_then_every_interval_despite_a_failing_sink(
        sqlite_store, settings):
    settings = settings.model_copy(update={"audit_checkpoint_seconds": 1.0,
                                           "audit_checkpoint_sink": "http://127.0.0.1:1/down"})
    add_rows(sqlite_store, 2)
    supervisor = Supervisor(settings)
    engine = SimpleNamespace(health={})  # all the loop touches of the engine
    part, every, work = Checkpointer(sqlite_store, settings).loop_entry()
    assert (part, every) == (PART, 1.0)
    thread = threading.Thread(target=supervisor._loop, args=(engine, part, every, work))
    started = time.monotonic()
    thread.start()
    try:
        deadline = started + 30
        while len(written(settings)) < 2 and time.monotonic() < deadline:
            add_rows(sqlite_store, 1)
            time.sleep(0.2)
    finally:
        supervisor.stopping.set()
        thread.join(10)
    first, second = written(settings)[:2]
    assert first["seq"] >= 2 and second["seq"] > first["seq"]
    assert engine.health[PART] == {"ok": True, "failures": 0}  # the sink failure is only logged
    assert not thread.is_alive()


def test_stopping_serve_writes_a_checkpoint_of_the_final_head(sqlite_store, settings):
    supervisor = Supervisor(settings)
    supervisor.checkpointer = Checkpointer(sqlite_store, settings)
    add_rows(sqlite_store, 3)
    supervisor.stop()
    [last] = written(settings)
    with sqlite_store.read_session() as session:
        assert (last["seq"], last["hash"]) == audit.head(session) == (3, last["hash"])
    assert checkpoints.latest_checkpoint(settings) == last


def test_a_checkpoint_that_cannot_be_written_does_not_stop_the_stop(sqlite_store, settings,
                                                                    caplog):
    checkpoints.checkpoint_path(settings).mkdir(parents=True)  # a folder where the file goes
    supervisor = Supervisor(settings)
    supervisor.checkpointer = Checkpointer(sqlite_store, settings)
    (settings.data_dir / "serve.json").write_text("{}")
    supervisor.stop()
    assert "could not write the audit checkpoint at stop" in caplog.text
    assert not (settings.data_dir / "serve.json").exists()  # the stop went on past it
