"""`touchpoints preview`: every message a touch point would send a customer, rendered for
real (footer and headers included) but never sent."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formataddr

from flows import clock
from flows.engine.context import build_context
from flows.errors import TemplateError
from flows.templating import render_text
from flows.steps.base import CustomerView


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


def sample_trigger(config, touchpoint, customer: CustomerView) -> dict:
    """The event a preview pretends started the journey: the catalogue's example."""
    trigger = touchpoint.trigger
    event_type = getattr(trigger, "event", None) or f"{trigger.kind}.trigger"
    examples = {name: (spec.example or {}) for name, spec in config.event_types().items()}
    data = dict(examples.get(event_type, {}))
    if trigger.kind == "count":
        data = {"category": "sample", "count": trigger.count,
                "history": [{"id": f"evt-{i}", "occurred_at": "2026-01-01T09:00:00+00:00",
                             "data": dict(examples.get(event_type, {}))}
                            for i in range(trigger.count)]}
    return {"id": "evt-preview", "type": event_type, "customer_id": customer.id,
            "occurred_at": clock.now().isoformat(), "data": data}


def _walk(steps, path: str = ""):
    for step in steps:
        yield step, path
        for label, child in step.children():
            yield from _walk(child, f"{path}{step.id} › {label} › ")


def preview(engine, touchpoint_name: str, customer: CustomerView) -> list[PreviewMessage]:
    from flows.mail.message import build_message

    config = engine.config
    tp = engine.touchpoint(touchpoint_name)
    trigger = sample_trigger(config, tp, customer)
    examples = {name: (spec.example or {}) for name, spec in config.event_types().items()}
    results: dict[str, dict] = {}
    out: list[PreviewMessage] = []
    for step, path in _walk(tp.steps):
        for spec in step.messages():
            extra = dict(spec.extra)
            links = {"unsubscribe": engine.signer.url("unsubscribe", customer=customer.id),
                     "preferences": engine.signer.url("preferences", customer=customer.id),
                     **extra.pop("links", {})}
            ctx = build_context(config=config, customer=customer, event=trigger, trigger=trigger,
                                results=results, journey_id="preview", touchpoint=tp.name,
                                now=clock.now(), links=links)
            try:  # strings the step renders at send time (a task's title and body) render here too
                ctx.update(_rendered(extra, ctx))
            except TemplateError as exc:
                out.append(PreviewMessage(step.id, path.removesuffix(" › "), spec.to, "", spec.category,
                                          "", "", error=exc.message))
                continue
            to = _address(config, customer, spec.to)
            try:
                rendered = engine.renderer.render_email(spec.template, spec.subject, ctx)
            except TemplateError as exc:
                out.append(PreviewMessage(step.id, path.removesuffix(" › "), to, "", spec.category, "", "",
                                          error=exc.message))
                continue
            transactional = spec.category == "internal" or config.categories[spec.category].transactional
            to_customer = spec.to == "customer"
            message = build_message(
                sender=config.defaults.sender, to=to, subject=rendered.subject, text=rendered.text,
                html=rendered.html, key=f"preview:{tp.name}:{step.id}:{customer.id}",
                reply_to=config.defaults.reply_to, transactional=transactional or not to_customer,
                postal_address=config.defaults.postal_address,
                unsubscribe_url=None if transactional else ctx["links"]["unsubscribe"],
                preferences_url=None if transactional else ctx["links"]["preferences"])
            text = message.get_body(("plain",)).get_content()
            html = message.get_body(("html",)).get_content()
            out.append(PreviewMessage(step.id, path.removesuffix(" › "), to, rendered.subject,
                                      spec.category, text, html))
        results[step.id] = step.sample_result(examples)
    return out


def _rendered(value, ctx: dict):
    """Render every string inside ``value`` as a template with ``ctx``."""
    if isinstance(value, str):
        return render_text(value, ctx) if "{" in value else value
    if isinstance(value, dict):
        return {k: _rendered(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_rendered(v, ctx) for v in value]
    return value


def _address(config, customer: CustomerView, to: str) -> str:
    if to == "customer":
        return formataddr((customer.name, customer.email))
    if to == "account_owner":
        return formataddr((customer.account_owner_name or "", customer.account_owner or "(no account owner)"))
    if to.startswith("team:"):
        return config.teams[to.removeprefix("team:")].email
    return to
