"""`touchpoints plan` shows what a touch point compiles to, as text or a Mermaid flowchart,
for a small project written here (its own touchpoints.yaml and templates)."""

from __future__ import annotations

import re

import pytest

PROJECT = """\
version: 1
defaults:
  sender: "Test ISP <hello@isp.example>"
  postal_address: "1 Test Street, Testville"
  timezone: Europe/London
categories:
  service: {transactional: true, description: "Service notices"}
  surveys: {transactional: false, description: "Short questions"}
teams:
  support: {email: support@isp.example, sla: 4h}
events:
  contract.signed:
    description: The CRM marks a contract as signed.
    example: {plan: "Fibre 500"}
  outage.declared:
    description: The NOC declares an outage.
    example: {outage_id: OUT-1, regions: [north]}
  ticket.opened:
    description: The helpdesk opens a ticket.
    example: {ticket_id: TKT-1, category: dropouts}
touchpoints:
  welcome:
    description: Welcome new customers, then ask how it went.
    trigger: {event: contract.signed, where: "event.data.plan != 'trial'"}
    audience: customer
    steps:
      - {id: hello, kind: email, subject: "Welcome, {{ customer.first_name }}", template: tp/hello, category: service}
      - {id: settle, kind: wait, for: 3d}
      - {id: ask, kind: survey, question: csat, subject: "How did we do?", template: tp/hello}
      - {id: answer, kind: wait_for, event: survey.answered, timeout: 7d}
      - id: unhappy
        kind: branch
        when:
          - if: "steps.ask.score is not none and steps.ask.score <= 2"
            steps:
              - {id: call, kind: handoff, team: support, title: "Call \\"{{ customer.name }}\\""}
          - if: "steps.answer.outcome == 'timeout'"
            steps:
              - {id: end, kind: exit, reason: 'no "answer" <yet>'}
      - {id: done, kind: exit, goal: "settled in"}
  outage:
    description: Tell the region about an outage.
    trigger: {event: outage.declared}
    audience: {segment: "customer.region in event.data.regions"}
    entry: {rule: once, key: event.data.outage_id}
    steps:
      - id: sort
        kind: branch
        when:
          - if: "customer.plan == 'Business'"
            steps:
              - {id: tell_business, kind: email, subject: "Outage", template: tp/hello, category: service}
        else:
          - {id: tell_home, kind: email, subject: "Outage", template: tp/hello, category: service}
      - {id: tell_noc, kind: email, to: "team:support", subject: "Told", template: tp/hello, category: service}
  renewal:
    description: Renewal notice.
    trigger: {date: "90d before contract_end", at: "10:30"}
    audience: customer
    steps: [{id: notice, kind: email, subject: "Renewal", template: tp/hello, category: service}]
  review:
    description: Quarterly review.
    trigger: {schedule: quarterly}
    audience: {segment: "customer.plan == 'Business'"}
    steps: [{id: review_mail, kind: email, subject: "Review", template: tp/hello, category: service}]
  nightly:
    description: A cron schedule.
    trigger: {schedule: "15 2 * * 1"}
    audience: {segment: "true"}
    steps: [{id: nightly_mail, kind: email, subject: "Hi", template: tp/hello, category: service}]
  quiet:
    description: Nobody talked to them.
    trigger: {inactivity: 30d}
    audience: customer
    entry: {rule: after_end}
    steps: [{id: check_in, kind: email, subject: "Hi", template: tp/hello, category: service}]
  recurring:
    description: Third ticket about the same thing.
    trigger: {count: 3, event: ticket.opened, within: 30d, same: category}
    audience: customer
    steps: [{id: escalate, kind: handoff, team: support, title: "Recurring issue"}]
"""


@pytest.fixture
def project(tmp_path):
    templates = tmp_path / "templates"
    for name, body in {"tp/hello": "Hello {{ customer.first_name }}",
                       "_system/handoff": "{{ task.title }} {{ links.ack }}"}.items():
        (templates / name).parent.mkdir(parents=True, exist_ok=True)
        (templates / f"{name}.txt").write_text(body + "\n", encoding="utf-8")
        (templates / f"{name}.html").write_text(f"<p>{body}</p>\n", encoding="utf-8")
    path = tmp_path / "touchpoints.yaml"
    path.write_text(PROJECT, encoding="utf-8")
    return path


@pytest.fixture
def config(project):
    from flows.config import load_config

    return load_config(project)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from flows.cli import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- text
def test_the_text_plan_names_the_flow_the_trigger_the_audience_and_the_entry_rule(project, capsys):
    code, out, _ = run_cli(capsys, "plan", "welcome", "-f", str(project))

    assert code == 0
    assert out.splitlines()[:4] == [
        "welcome  (Prefect flow 'welcome')",
        "  trigger:  when contract.signed arrives (where event.data.plan != 'trial')",
        "  audience: the customer the trigger is about",
        "  entry:    once_per_cycle: once per customer per contract cycle",
    ]


def test_the_text_plan_is_an_indented_tree_with_waits_and_branches_marked(config):
    from flows.engine.plan import plan_text

    steps = plan_text(config.touchpoint("welcome")).split("  steps:\n", 1)[1].splitlines()

    assert steps == [
        "    • hello: email customer: tp/hello [service]",
        "    ⏸ settle: wait 3d",
        "    • ask: survey (CSAT): tp/hello",
        "    ⏸ answer: wait for survey.answered (timeout 1w)",
        "    ⑂ unhappy: branch (2 conditions)",
        "        if steps.ask.score is not none and steps.ask.score <= 2:",
        "            • call: handoff to support",
        "        if steps.answer.outcome == 'timeout':",
        "            ⏹ end: exit: no \"answer\" <yet>",
        "    ⏹ done: exit: goal 'settled in'",
        "    ■ end",
    ]


def test_every_trigger_form_reads_as_words(config):
    from flows.engine.plan import describe_trigger

    words = {name: describe_trigger(tp.trigger) for name, tp in config.touchpoints.items()}

    assert words["renewal"] == ("90d before contract_end at 10:30 in the customer's timezone, "
                                "once per contract cycle")
    assert words["review"] == "every quarter (cron 0 9 1 */3 *, UTC)"
    assert words["nightly"] == "on the cron schedule 15 2 * * 1 (UTC)"
    assert words["quiet"] == "after 30d without contact"
    assert words["recurring"] == "on the 3rd ticket.opened within 30d with the same category"


def test_a_segment_audience_and_a_keyed_entry_rule_are_spelled_out(config):
    from flows.engine.plan import plan_text

    text = plan_text(config.touchpoint("outage"))

    assert "  audience: every customer where customer.region in event.data.regions" in text
    assert "  entry:    once: once per entry key, ever; keyed by event.data.outage_id" in text


def test_without_a_name_the_plan_covers_every_touch_point(project, config, capsys):
    code, out, _ = run_cli(capsys, "plan", "-f", str(project))

    assert code == 0
    for name in config.touchpoints:
        assert f"{name}  (Prefect flow '{name}')" in out


def test_an_unknown_touch_point_is_an_error_with_a_did_you_mean_hint(project, capsys):
    code, out, err = run_cli(capsys, "plan", "welcom", "-f", str(project))

    assert code == 1
    assert out == ""
    assert "no touch point 'welcom'" in err
    assert "did you mean 'welcome'" in err


def test_render_plans_raises_not_found_for_an_unknown_name(config):
    from flows.engine.plan import render_plans
    from flows.errors import NotFoundError

    with pytest.raises(NotFoundError, match="outage") as info:
        render_plans(config, "outages")
    assert "did you mean 'outage'" in info.value.hint


# --------------------------------------------------------------------------- Mermaid
def _edges(diagram: str) -> set[tuple[str, str | None, str]]:
    found = set()
    for line in diagram.splitlines():
        m = re.fullmatch(r'\s*(\w+) -->(?:\|"([^"]*)"\|)? (\w+)', line)
        if m:
            found.add((m[1], m[2], m[3]))
    return found


def _nodes(diagram: str) -> dict[str, str]:
    """node id → its declaration (shape and label)."""
    return {m[1]: m[2] for m in re.finditer(r'^\s*(\w+)(\W.*)$', diagram, re.MULTILINE)
            if "-->" not in m[2]}


def test_the_mermaid_plan_draws_the_steps_in_order_from_the_trigger_to_the_end(project, capsys):
    code, out, _ = run_cli(capsys, "plan", "outage", "--mermaid", "-f", str(project))

    assert code == 0
    assert out.startswith("flowchart TD\n")
    edges = _edges(out)
    assert ("start", None, "s_sort") in edges
    assert ("s_sort", "if customer.plan == 'Business'", "s_tell_business") in edges
    assert ("s_sort", "else", "s_tell_home") in edges
    assert {("s_tell_business", None, "s_tell_noc"), ("s_tell_home", None, "s_tell_noc")} <= edges
    assert ("s_sort", "no arm", "s_tell_noc") not in edges  # the else arm takes everyone left
    assert ("s_tell_noc", None, "finish") in edges


def test_mermaid_node_ids_are_unique_even_for_steps_called_end_or_done(config):
    from flows.engine.plan import plan_mermaid

    diagram = plan_mermaid(config.touchpoint("welcome"))
    declared = [m[1] for m in re.finditer(r'^\s*(\w+)[\[\{\(]', diagram, re.MULTILINE)]

    assert len(declared) == len(set(declared))
    assert {"s_end", "s_done", "start", "finish"} <= set(declared)
    assert not re.search(r"^\s*end\b", diagram, re.MULTILINE)  # `end` is a Mermaid keyword


def test_mermaid_draws_waits_branches_and_exits_as_distinct_shapes(config):
    from flows.engine.plan import plan_mermaid

    nodes = _nodes(plan_mermaid(config.touchpoint("welcome")))

    assert nodes["s_settle"].startswith('[/"⏸ settle: wait 3d"/]')
    assert nodes["s_unhappy"].startswith('{"unhappy: branch')
    assert nodes["s_done"].startswith('[["done: exit')
    assert nodes["s_hello"].startswith('["hello: email')
    assert nodes["finish"] == '(["end"])'


def test_mermaid_arms_are_labelled_edges_and_exits_lead_nowhere(config):
    from flows.engine.plan import plan_mermaid

    edges = _edges(plan_mermaid(config.touchpoint("welcome")))

    assert ("s_unhappy", "if steps.answer.outcome == 'timeout'", "s_end") in edges
    assert ("s_call", None, "s_done") in edges          # the arm's end leads on
    assert ("s_unhappy", "no arm", "s_done") in edges   # members no arm takes carry on
    assert not any(source in ("s_end", "s_done") for source, _, _ in edges)


def test_mermaid_labels_escape_quotes_and_angle_brackets(config):
    from flows.engine.plan import mermaid_label, plan_mermaid

    diagram = plan_mermaid(config.touchpoint("welcome"))

    assert mermaid_label('say "hi" <b> & #1 | `x`') == \
        "say #34;hi#34; #60;b#62; #38; #35;1 #124; #96;x#96;"
    assert mermaid_label("two\nlines") == "two lines"
    assert '"if steps.ask.score is not none and steps.ask.score #60;= 2"' in diagram
    assert 's_end[["end: exit: no #34;answer#34; #60;yet#62;"]]' in diagram
    assert "<" not in diagram
    for line in diagram.splitlines()[1:]:
        assert line.count('"') % 2 == 0, line  # every label's quotes are balanced


def test_mermaid_for_every_touch_point_is_one_fenced_diagram_each(project, config, capsys):
    code, out, _ = run_cli(capsys, "plan", "--mermaid", "-f", str(project))

    assert code == 0
    assert out.count("```mermaid\nflowchart TD\n") == len(config.touchpoints)
    assert "## recurring" in out
