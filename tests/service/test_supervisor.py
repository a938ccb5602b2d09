"""What `touchpoints serve` says while it starts."""

from __future__ import annotations


def test_only_the_first_start_of_an_embedded_prefect_server_says_it_migrates_its_database(
        tmp_path, monkeypatch):
    from flows.service.supervisor import prefect_first_start_note
    from flows.settings import Settings

    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    settings = Settings(data_dir=tmp_path / "data", secret_key="test")
    first = prefect_first_start_note(settings)
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    (settings.prefect_home / "prefect.db").write_bytes(b"")  # the server made its database

    assert "migrates its database" in first
    assert prefect_first_start_note(settings) == ""


def test_a_prefect_server_on_its_own_database_server_is_not_said_to_migrate(tmp_path):
    from flows.service.supervisor import prefect_first_start_note
    from flows.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", secret_key="test",
                        prefect_database_url="postgresql://prefect@127.0.0.1/prefect")

    assert prefect_first_start_note(settings) == ""


def test_every_child_runs_its_flow_runs_with_prefect_heartbeats_on(tmp_path, monkeypatch):
    from flows.service.supervisor import Supervisor
    from flows.settings import Settings

    monkeypatch.delenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", raising=False)
    supervisor = Supervisor(Settings(data_dir=tmp_path / "data", secret_key="test"),
                            say=lambda *_: None)

    env = supervisor._child_env("http://127.0.0.1:4200/api")
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"  # zombies.py crashes silent runs
    monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "60")  # an operator's own wins
    assert supervisor._child_env(None)["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "60"
