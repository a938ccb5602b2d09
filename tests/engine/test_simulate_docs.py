"""The simulation shown in docs/getting-started.md is a file (docs/examples/simulate-renewal.txt:
the command, then what it prints), and this test runs it: the guide cannot drift from what
`touchpoints simulate` really prints."""

from __future__ import annotations

import shlex

from tests.engine import simfixtures

sim_engine = simfixtures.sim_engine  # the fixture
EXAMPLE = simfixtures.REPO / "docs" / "examples" / "simulate-renewal.txt"
GUIDE = simfixtures.REPO / "docs" / "getting-started.md"


def test_the_guides_simulation_prints_what_its_example_file_says(sim_engine, capsys):
    from flows.cli import main

    command, _, expected = EXAMPLE.read_text(encoding="utf-8").partition("\n")
    argv = shlex.split(command.removeprefix("$ "))
    assert argv[:2] == ["touchpoints", "simulate"]
    main(argv[1:])
    assert capsys.readouterr().out == expected


def test_the_guide_shows_the_example_file_as_it_is():
    guide = GUIDE.read_text(encoding="utf-8")
    assert EXAMPLE.read_text(encoding="utf-8") in guide
    assert "## Try a change before it reaches a customer" in guide
