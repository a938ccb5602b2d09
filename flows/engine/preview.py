"""`touchpoints preview`: every message a touch point would send a customer, rendered for
real (footer and headers included) but never sent.

What a preview shows is what would go out: the recipient as a person reads it (``Zoë Harper
<zoe@…>``, never an encoded-word), a handoff's real due time, owner and escalation contacts from
its team, and inside a branch arm results that make the arm's own condition true (a "scored 2/5"
call-back is previewed with a score of 2, not the sample 9). ``data`` replaces or adds fields of
the trigger's example data, as ``--data '{json}'`` does.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from flows import clock
from flows.engine import contact_policy
from flows.engine.context import build_context
from flows.errors import TemplateError, TouchpointsError
from flows.steps.base import CustomerView
from flows.templating import evaluate, render_text

#: at most this many combinations of sample results are tried to satisfy an arm's condition
MAX_TRIES = 256
_STEP_REF = re.compile(r"\bsteps\.([a-z][a-z0-9_]*)")


@dataclass
class PreviewMessage:
    step_id: str
    path: str          # where the step sits, e.g. "unhappy › if steps.x.score <= 6"
    to: str
    subject: str
    category: str
    text: str
    html: str
    error: str | None = None
    note: str | None = None   # the control group, the contact policy (sent to the customer now)


def sample_trigger(config, touchpoint, customer: CustomerView,
                   data: dict[str, Any] | None = None) -> dict:
    """The event a preview pretends started the journey: the catalogue's example, with
    ``data`` laid over it."""
    trigger = touchpoint.trigger
    event_type = getattr(trigger, "event", None) or f"{trigger.kind}.trigger"
    examples = {name: (spec.example or {}) for name, spec in config.event_types().items()}
    sample = dict(examples.get(event_type, {}))
    if trigger.kind == "count":
        sample = {"category": "sample", "count": trigger.count,
                  "history": [{"id": f"evt-{i}", "occurred_at": "2026-01-01T09:00:00+00:00",
                               "data": dict(examples.get(event_type, {}))}
                              for i in range(trigger.count)]}
    return {"id": "evt-preview", "type": event_type, "customer_id": customer.id,
            "occurred_at": clock.now().isoformat(), "data": {**sample, **(data or {})}}


def preview(engine, touchpoint_name: str, customer: CustomerView,
            data: dict[str, Any] | None = None) -> list[PreviewMessage]:
    if data is not None and not isinstance(data, dict):
        raise TouchpointsError("the preview's event data must be a JSON object",
                               hint="""e.g. --data '{"plan": "Fibre 900"}'""")
    config = engine.config
    tp = engine.touchpoint(touchpoint_name)
    walk = _Walk(engine, tp, customer, sample_trigger(config, tp, customer, data))
    walk.steps(tp.steps, results={}, path="")
    return walk.out


class _Walk:
    def __init__(self, engine, tp, customer: CustomerView, trigger: dict) -> None:
        self.engine, self.config, self.tp, self.customer = engine, engine.config, tp, customer
        self.trigger = trigger
        self.examples = {name: (spec.example or {}) for name, spec in self.config.event_types().items()}
        self.kinds = {s.id: s for s in _all_steps(tp.steps)}
        self.out: list[PreviewMessage] = []
        self.contacts: dict = {}   # the customer's ledger read, once per preview

    def context(self, results: dict, links: dict | None = None) -> dict:
        return build_context(config=self.config, customer=self.customer, event=self.trigger,
                             trigger=self.trigger, results=results, journey_id="preview",
                             touchpoint=self.tp.name, now=clock.now(), links=links)

    def steps(self, steps: list, *, results: dict, path: str) -> None:
        for step in steps:
            for spec in step.messages():
                self.out.append(self.message(step, spec, results, path.removesuffix(" › ")))
                if spec.to == "customer":
                    self.out[-1].note = contact_policy.preview_note(
                        self.engine, self.tp, self.customer.id, spec.category, clock.now(),
                        self.contacts)
                owner = self.owner(step, spec)
                if owner:  # a handoff with an owner emails them too, as the run does
                    self.out.append(self.message(step, replace(spec, to=owner), results,
                                                 path.removesuffix(" › ")))
            arms = step.children()
            conditions = [arm.if_ for arm in getattr(step, "when", [])]
            for index, (label, child) in enumerate(arms):
                arm_results = self.satisfying(conditions, index, results)
                self.steps(child, results=arm_results, path=f"{path}{step.id} › {label} › ")
            results[step.id] = step.sample_result(self.examples)

    # ------------------------------------------------------------------ branch arms
    def satisfying(self, conditions: list[str], index: int, results: dict) -> dict:
        """Sample results under which arm ``index`` is the one taken: its condition true and
        every earlier one false (for ``else``, all of them false). The results the
        conditions read are varied over what their steps can hold; if nothing fits, the
        plain samples are kept."""
        wanted = [False] * min(index, len(conditions)) + ([True] if index < len(conditions) else [])
        tested = conditions[:len(wanted)]
        if not tested:
            return dict(results)
        ids = sorted({ref for text in tested for ref in _STEP_REF.findall(text)} & set(results))
        choices = [[(sid, value) for value in self.variants(sid, results[sid])] for sid in ids]
        for combo in itertools.islice(itertools.product(*choices), MAX_TRIES):
            candidate = {**results, **dict(combo)}
            ctx = self.context(candidate)
            try:
                if [bool(evaluate(text, ctx)) for text in tested] == wanted:
                    return candidate
            except TouchpointsError:
                continue
        return dict(results)

    def variants(self, step_id: str, sample: dict) -> list[dict]:
        """What ``steps.<id>`` could hold: a survey's every score (and no answer), a wait's
        event and its timeout; otherwise the sample alone."""
        step = self.kinds.get(step_id)
        out = [sample]
        if getattr(step, "kind", None) == "survey" and step.question != "custom":
            from flows.steps.survey import SCALES

            low, high = SCALES[step.question]
            out = [{**sample, "answered": True, "score": score} for score in range(low, high + 1)]
            out.append({**sample, "answered": False, "score": None, "comment": None})
        elif getattr(step, "kind", None) == "survey":
            out = [{**sample, "answered": True, "answer": choice, "score": None}
                   for choice in step.choices]
            out.append({**sample, "answered": False, "answer": None})
        elif getattr(step, "kind", None) == "wait_for":
            out = [sample, {"outcome": "timeout", "event": None}]
        return out

    # ------------------------------------------------------------------ one message
    def message(self, step, spec, results: dict, path: str) -> PreviewMessage:
        from flows.mail.message import build_message

        config, customer = self.config, self.customer
        extra = dict(spec.extra)
        links = {"unsubscribe": self.engine.signer.url("unsubscribe", customer=customer.id),
                 "preferences": self.engine.signer.url("preferences", customer=customer.id),
                 **extra.pop("links", {})}
        if isinstance(extra.get("task"), dict):
            extra["task"] = self.task(step, extra["task"])
        ctx = self.context(results, links)
        name, address = _recipient(config, customer, spec.to)
        to = _display(name, address)
        try:  # strings the step renders at send time (a task's title and body) render here too
            ctx.update(_rendered(extra, ctx))
            rendered = self.engine.renderer.render_email(spec.template, spec.subject, ctx)
        except TemplateError as exc:
            return PreviewMessage(step.id, path, to, "", spec.category, "", "", error=exc.message)
        except Exception as exc:  # noqa: BLE001 - a filter given data it cannot take: say so
            return PreviewMessage(step.id, path, to, "", spec.category, "", "",
                                  error=f"{type(exc).__name__}: {exc}")
        transactional = spec.category == "internal" or config.categories[spec.category].transactional
        to_customer = spec.to == "customer"
        try:
            message = build_message(
                sender=config.defaults.sender, to=(name, address), subject=rendered.subject,
                text=rendered.text, html=rendered.html,
                key=f"preview:{self.tp.name}:{step.id}:{customer.id}",
                reply_to=config.defaults.reply_to, transactional=transactional or not to_customer,
                postal_address=config.defaults.postal_address,
                unsubscribe_url=None if transactional else ctx["links"]["unsubscribe"],
                preferences_url=None if transactional else ctx["links"]["preferences"])
        except ValueError as exc:  # an address from the data that no email could carry
            return PreviewMessage(step.id, path, to, rendered.subject, spec.category, "", "",
                                  error=f"cannot be sent: {exc}")
        return PreviewMessage(step.id, path, to, rendered.subject, spec.category,
                              message.get_body(("plain",)).get_content(),
                              message.get_body(("html",)).get_content())

    def owner(self, step, spec) -> str | None:
        """The task owner a handoff's email also goes to (None: no task, or no owner)."""
        task = spec.extra.get("task")
        if not isinstance(task, dict) or not spec.to.startswith("team:"):
            return None
        owner = self.task(step, task).get("owner")
        return owner if isinstance(owner, str) and "@" in owner else None

    def task(self, step, sample: dict) -> dict:
        """A handoff's task as the run would make it: due after the step's SLA or its team's,
        owned by the account owner when the step says so, escalated to the team's contacts."""
        team = self.config.teams.get(sample.get("team") or "")
        if team is None:
            return sample
        owner = getattr(step, "owner", None)
        if owner == "account_owner":
            owner = self.customer.account_owner
        sla = getattr(step, "sla", None) or team.sla or timedelta(0)
        return {**sample, "due_at": clock.now() + sla, "owner": owner,
                "escalation": [{"after": level.after.total_seconds(), "to": level.to}
                               for level in team.escalation]}


def _all_steps(steps: list):
    for step in steps:
        yield step
        for _, child in step.children():
            yield from _all_steps(child)


def _rendered(value, ctx: dict):
    """Render every string inside ``value`` as a template with ``ctx``."""
    if isinstance(value, str):
        return render_text(value, ctx) if "{" in value else value
    if isinstance(value, dict):
        return {k: _rendered(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_rendered(v, ctx) for v in value]
    return value


def _recipient(config, customer: CustomerView, to: str) -> tuple[str, str]:
    if to == "customer":
        return customer.name or "", customer.email or ""
    if to == "account_owner":
        return customer.account_owner_name or "", customer.account_owner or "(no account owner)"
    if to.startswith("team:"):
        return "", config.teams[to.removeprefix("team:")].email
    return "", to


_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def _display(name: str, address: str) -> str:
    """``Name <address>`` as a person reads it: decoded, control characters shown as spaces, a
    name with address specials in quotes."""
    name = " ".join(_UNSAFE.sub(" ", name or "").split())
    address = _UNSAFE.sub(" ", address or "").strip()
    if not name:
        return address
    if re.search(r'[()<>\[\]:;@\\,."]', name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"
