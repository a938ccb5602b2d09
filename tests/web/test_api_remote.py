"""`touchpoints emit` against a running service: serve.json, finding the service, posting."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from flows.cli import remote
from flows.errors import ServiceError, TouchpointsError
from tests.web.support import add_customer, events
from tests.web.test_api_support import make_key


@pytest.fixture
def local(settings, tmp_path):
    return settings.model_copy(update={"data_dir": tmp_path / "data"})


@pytest.fixture
def server(app):
    """The app served by uvicorn on a free local port, as `touchpoints serve` would."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_serve_json_round_trips_and_is_private(local):
    info = remote.ServiceInfo(pid=os.getpid(), web_url="http://127.0.0.1:8000",
                              prefect_url="http://127.0.0.1:4200", api_key="tp_x_y",
                              extra={"mail_port": 8025})
    path = remote.write_service_info(local, info)
    assert path == local.data_dir / "serve.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["mail_port"] == 8025
    assert remote.read_service_info(local) == info
    remote.remove_service_info(local, pid=os.getpid() + 1)  # not ours: kept
    assert path.exists()
    remote.remove_service_info(local, pid=os.getpid())
    assert not path.exists()


def test_no_serve_json_means_no_service(local):
    assert remote.find_service(local) is None
    (local.data_dir).mkdir(parents=True)
    (local.data_dir / "serve.json").write_text("{not json")
    assert remote.find_service(local) is None


def test_a_service_whose_process_is_gone_is_not_found(local, server):
    remote.write_service_info(local, remote.ServiceInfo(pid=dead_pid(), web_url=server))
    assert remote.find_service(local) is None


def test_a_service_that_does_not_answer_healthz_is_not_found(local):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote.write_service_info(local, remote.ServiceInfo(pid=os.getpid(),
                                                        web_url=f"http://127.0.0.1:{port}"))
    assert remote.find_service(local, timeout=0.5) is None


def test_a_live_service_is_found(local, server):
    remote.write_service_info(local, remote.ServiceInfo(pid=os.getpid(), web_url=server))
    assert remote.find_service(local).web_url == server


def test_emit_remote_posts_the_event_to_the_running_service(local, server, engine, launcher):
    add_customer(engine, "C-1001")
    key_id, key, _ = make_key(engine, "cli")
    remote.write_service_info(local, remote.ServiceInfo(pid=os.getpid(), web_url=server, api_key=key))
    answer = remote.emit_remote(local, type="contract.signed", customer_id="C-1001",
                                data={"plan": "Fibre 500"}, event_id="cli-1")
    assert answer["status"] == "accepted" and answer["remote"] is True
    assert answer["started"] == ["sale"]
    [row] = events(engine)
    assert (row.id, row.source) == ("cli-1", f"api:{key_id}")
    assert [s["touchpoint"] for s in launcher.started] == ["sale"]
    again = remote.emit_remote(local, type="contract.signed", customer_id="C-1001", event_id="cli-1")
    assert again["duplicate"] is True and len(launcher.started) == 1


def test_emit_remote_gives_every_event_an_id_so_retries_are_safe(local, server, engine):
    _, key, _ = make_key(engine, "cli")
    remote.write_service_info(local, remote.ServiceInfo(pid=os.getpid(), web_url=server, api_key=key))
    answer = remote.emit_remote(local, type="outage.declared", data={"regions": ["north"]})
    assert answer["event_id"].startswith("evt-")


def test_a_refusal_from_the_service_is_a_touchpoints_error_with_its_hint(local, server, engine):
    _, key, _ = make_key(engine, "cli")
    remote.write_service_info(local, remote.ServiceInfo(pid=os.getpid(), web_url=server, api_key=key))
    with pytest.raises(TouchpointsError) as caught:
        remote.emit_remote(local, type="contract.signd", customer_id="C-1001")
    assert "contract.signed" in caught.value.hint


def test_the_api_key_comes_from_the_environment_before_serve_json(local, server, engine,
                                                                   monkeypatch):
    _, key, _ = make_key(engine, "cli")
    remote.write_service_info(local, remote.ServiceInfo(pid=os.getpid(), web_url=server,
                                                        api_key="tp_000000000000_" + "x" * 43))
    monkeypatch.setenv(remote.API_KEY_ENV, key)
    answer = remote.emit_remote(local, type="outage.declared", data={"regions": ["north"]})
    assert answer["status"] == "accepted"


def test_without_a_key_the_service_refuses_with_a_hint(local, server, monkeypatch):
    monkeypatch.delenv(remote.API_KEY_ENV, raising=False)
    remote.write_service_info(local, remote.ServiceInfo(pid=os.getpid(), web_url=server))
    with pytest.raises(TouchpointsError, match="API key"):
        remote.emit_remote(local, type="outage.declared")


def test_local_never_posts_and_auto_falls_back_when_no_service_runs(local, server):
    remote.write_service_info(local, remote.ServiceInfo(pid=os.getpid(), web_url=server))
    assert remote.emit_remote(local, type="outage.declared", remote=False) is None
    remote.remove_service_info(local)
    assert remote.emit_remote(local, type="outage.declared") is None


def test_remote_without_a_running_service_fails_with_a_hint(local):
    with pytest.raises(ServiceError) as caught:
        remote.emit_remote(local, type="outage.declared", remote=True)
    assert "touchpoints serve" in caught.value.hint


def test_the_prefect_api_is_found_from_serve_json():
    info = remote.ServiceInfo(pid=1, web_url="http://x", prefect_url="http://127.0.0.1:4200/")
    assert remote.prefect_api_url(info) == "http://127.0.0.1:4200/api"
    assert remote.prefect_api_url(None) is None
