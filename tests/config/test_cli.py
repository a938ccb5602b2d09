"""`touchpoints check` and `touchpoints schema` through the real entry point."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from tests.config.support import WELCOME, write_config


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def tp(capsys, monkeypatch, tmp_path):
    from flows.cli import main
    from flows.settings import reset_settings

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    reset_settings()

    def run(*args: str) -> Run:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    yield run
    reset_settings()


def test_check_exits_0_with_a_summary_for_a_valid_file(tp, tmp_path):
    write_config(tmp_path, WELCOME)
    run = tp("check")
    assert run.code == 0, run.out + run.err
    assert run.out.strip() == ("OK: touchpoints.yaml: 1 touch points, 1 steps, 2 teams, "
                               "3 categories, 6 event types")


def test_check_reads_the_file_named_in_the_settings(tp, tmp_path, monkeypatch):
    from flows.settings import reset_settings

    write_config(tmp_path / "elsewhere", WELCOME.replace("category: service", "category: x"))
    monkeypatch.setenv("TOUCHPOINTS_CONFIG_FILE", str(tmp_path / "elsewhere" / "touchpoints.yaml"))
    reset_settings()
    run = tp("check")
    assert run.code == 1
    assert "unknown category 'x'" in run.out


def test_check_exits_1_and_prints_every_diagnostic_with_its_hint(tp, tmp_path):
    write_config(tmp_path, WELCOME.replace("category: service", "category: survey")
                 .replace("kind: email", "kind: email, timout: 3d"))
    run = tp("check", "-f", "touchpoints.yaml")
    assert run.code == 1
    lines = run.out.splitlines()
    assert [line.split(": ", 2)[1:] for line in lines if not line.startswith(" ")] == [
        ["touchpoints.sale.steps[0].timout", "unknown field 'timout'"],
        ["touchpoints.sale.steps[0].category", "unknown category 'survey'"],
    ]
    assert "  hint: did you mean 'surveys'? (see docs/reference.md)" in lines
    assert "2 problems in touchpoints.yaml" in run.err
    assert "Traceback" not in run.out + run.err


def test_check_as_json_lists_objects_with_every_field(tp, tmp_path):
    write_config(tmp_path, WELCOME.replace("category: service", "category: survey"))
    run = tp("check", "--format", "json")
    assert run.code == 1
    [item] = json.loads(run.out)
    assert set(item) == {"file", "line", "col", "path", "message", "hint", "docs"}
    assert (item["file"], item["path"], item["message"], item["hint"]) == (
        "touchpoints.yaml", "touchpoints.sale.steps[0].category", "unknown category 'survey'",
        "did you mean 'surveys'?")
    assert isinstance(item["line"], int) and isinstance(item["col"], int)


def test_check_as_json_prints_an_empty_list_for_a_valid_file(tp, tmp_path):
    write_config(tmp_path, WELCOME)
    run = tp("check", "--format", "json")
    assert (run.code, json.loads(run.out)) == (0, [])


@pytest.mark.parametrize(("setup", "message"), [
    (lambda p: None, "file not found"),
    (lambda p: (p / "touchpoints.yaml").mkdir(), "is a directory, not a file"),
    (lambda p: (p / "touchpoints.yaml").write_bytes(bytes(range(256)) * 4), "not a UTF-8 text file"),
    (lambda p: (p / "touchpoints.yaml").write_text(""), "the file is empty"),
])
def test_check_never_shows_a_traceback_for_unreadable_input(tp, tmp_path, setup, message):
    setup(tmp_path)
    run = tp("check")
    assert run.code == 1
    assert run.out.splitlines()[0].startswith("touchpoints.yaml:")
    assert message in run.out
    assert "Traceback" not in run.out + run.err


def test_schema_prints_json_by_default_and_writes_a_file_with_o(tp, tmp_path):
    run = tp("schema")
    assert run.code == 0
    printed = json.loads(run.out)
    assert "Step" in printed["$defs"]
    written = tp("schema", "-o", "touchpoints.schema.json")
    assert written.code == 0
    assert json.loads((tmp_path / "touchpoints.schema.json").read_text()) == printed
