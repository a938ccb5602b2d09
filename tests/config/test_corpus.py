"""The corpus of invalid files: each ``invalid/NAME.yaml`` is checked with the shared test
templates next to it, and must give exactly the lines of ``invalid/NAME.expected``
(``FILE:LINE:COL: path: message``, hints left out)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from flows.config import check
from tests.config.support import write_templates

CORPUS = Path(__file__).parent / "invalid"
CASES = sorted(p.stem for p in CORPUS.glob("*.yaml"))


def _check_copy(name: str, folder: Path, monkeypatch) -> list[str]:
    write_templates(folder)
    shutil.copy(CORPUS / f"{name}.yaml", folder / "touchpoints.yaml")
    monkeypatch.chdir(folder)
    return [d.format(hint=False) for d in check("touchpoints.yaml")]


@pytest.mark.parametrize("name", CASES)
def test_each_invalid_file_reports_exactly_its_expected_lines(name, tmp_path, monkeypatch):
    expected = (CORPUS / f"{name}.expected").read_text(encoding="utf-8").splitlines()
    assert expected, f"{name}.expected lists no error"
    assert _check_copy(name, tmp_path, monkeypatch) == expected


def test_every_invalid_file_has_an_expected_file_and_the_reverse():
    assert {p.stem for p in CORPUS.glob("*.expected")} == set(CASES)


def test_the_billion_laughs_file_is_refused_in_well_under_a_second(tmp_path, monkeypatch):
    started = time.perf_counter()
    lines = _check_copy("billion_laughs", tmp_path, monkeypatch)
    assert time.perf_counter() - started < 0.5
    assert lines == ["touchpoints.yaml:4:8: aliases (*a) are not allowed"]


def test_the_python_object_tag_is_refused_before_anything_is_built(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    (tmp_path / "touchpoints.yaml").write_text(
        f'version: 1\nx: !!python/object/apply:os.system ["touch {marker}"]\n')
    monkeypatch.chdir(tmp_path)
    lines = [d.format(hint=False) for d in check("touchpoints.yaml")]
    assert lines == [("touchpoints.yaml:2:4: the tag '!!python/object/apply:os.system' "
                      "is not allowed")]
    assert not marker.exists()
