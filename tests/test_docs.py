"""The reference in docs/ is generated from the registry and never goes stale."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_reference_on_disk_is_what_the_registry_generates():
    from flows.docs_gen import render_reference

    assert (REPO / "docs" / "reference.md").read_text(encoding="utf-8") == render_reference(), \
        "run `touchpoints docs` and commit docs/reference.md"


def test_every_registered_step_kind_and_its_fields_are_in_the_reference():
    from flows.docs_gen import render_reference
    from flows.steps import kinds

    reference = render_reference()
    for name, kind in kinds().items():
        assert f"### {name}" in reference
        for field_name, field in kind.config.model_fields.items():
            if field_name != "kind":
                assert f"`{field.alias or field_name}`" in reference


def test_the_docs_command_check_fails_on_a_stale_file(tmp_path, capsys):
    import pytest

    from flows.cli import main

    stale = tmp_path / "reference.md"
    stale.write_text("# old\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["docs", "--check", "-o", str(stale)])
    assert exit_info.value.code == 1
    assert "out of date" in capsys.readouterr().err
