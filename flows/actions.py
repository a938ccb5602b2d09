"""Business actions shared by the web pages and the CLI.

Every action changes the store in one transaction, appends an audit row with a clear actor
("web" for customers, "web:<email>" or "cli:<user>" for staff) and, where a journey may be
waiting for it, emits the matching event through the dispatcher so the journey resumes:

* :func:`answer_survey` -> ``survey.answered``
* :func:`acknowledge_task` -> ``task.acknowledged``
* :func:`complete_task` -> ``task.completed``

State changes are conditional UPDATEs (``... WHERE answered_at IS NULL``, ``... WHERE status
= 'open'``), so two concurrent requests can never both win. The event is emitted after the
change is committed, with a deterministic event id (``survey-<id>``, ``task-ack-<id>``,
``task-done-<id>``): emitting it again is a no-op, so a retry never resumes a journey twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from flows import clock
from flows.errors import DeliveryError, NotFoundError, TemplateError, TouchpointsError
from flows.store.tables import Customer, Preference, Survey, Task

log = logging.getLogger(__name__)

SCALES = {"nps": (0, 10), "csat": (1, 5)}
MAX_COMMENT = 5000
MAX_OUTCOME = 20000
OPEN_STATUSES = ("open", "acknowledged")
ESCALATION_TEMPLATE = "_system/escalation"
ESCALATION_SUBJECT = "Overdue: {{ task.title }} (level {{ level.number }})"


# --------------------------------------------------------------------------- errors
class ActionRefused(TouchpointsError):
    """The action is not possible in the current state (answered, expired, completed...)."""


class SurveyUnavailable(ActionRefused):
    """The survey was answered already, has expired or does not exist.

    Pages show one polite answer for all three cases; ``reason`` says which, for logs and CLI.
    """


class InvalidAnswer(TouchpointsError):
    """The submitted answer is out of range or not one of the choices."""


class TaskStateError(ActionRefused):
    """The task cannot move to the asked state (e.g. completing it twice)."""


# --------------------------------------------------------------------------- helpers
def _audit(session, **kwargs: Any) -> None:
    from flows.store import audit

    audit.record(session, **kwargs)


def _emit(dispatcher, **kwargs: Any) -> dict[str, Any]:
    """Emit after the change is committed. A failure here must not undo or hide the change,
    so it is logged and returned as ``event_error``; re-emitting with the same event id later
    is safe (the dispatcher ignores duplicates)."""
    try:
        return {"event": dispatcher.emit(**kwargs).as_dict()}
    except Exception as exc:
        log.exception("the change is saved but %s %s was not emitted", kwargs.get("type"),
                      kwargs.get("event_id"))
        return {"event": None, "event_error": str(exc)}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def validate_answer(survey: Survey, *, score: Any = None, answer: Any = None,
                    comment: Any = None) -> tuple[int | None, str | None, str | None]:
    """Check an answer against the survey's question; returns (score, answer, comment)."""
    comment = (str(comment).strip() or None) if comment is not None else None
    if comment and len(comment) > MAX_COMMENT:
        raise InvalidAnswer(f"the comment is longer than {MAX_COMMENT} characters",
                            hint="shorten the comment")
    if survey.question in SCALES:
        low, high = SCALES[survey.question]
        if score is None or score == "":
            raise InvalidAnswer(f"choose a score from {low} to {high}")
        try:
            value = int(str(score).strip())
        except ValueError:
            raise InvalidAnswer(f"the score must be a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise InvalidAnswer(f"the score must be from {low} to {high}, not {value}")
        return value, None, comment
    choices = [str(c) for c in (survey.choices or [])]
    text = str(answer).strip() if answer is not None else ""
    if not text:
        raise InvalidAnswer("choose one of the answers")
    if text not in choices:
        raise InvalidAnswer(f"{text!r} is not one of the answers",
                            hint="choose one of: " + ", ".join(choices))
    return None, text, comment


# --------------------------------------------------------------------------- surveys
def survey_state(survey: Survey | None, now: datetime | None = None) -> str:
    """open | answered | expired | missing."""
    if survey is None:
        return "missing"
    if survey.answered_at is not None:
        return "answered"
    if survey.expires_at <= (now or clock.now()):
        return "expired"
    return "open"


def answer_survey(engine, dispatcher, survey_id: str, *, score: Any = None, answer: Any = None,
                  comment: Any = None, actor: str) -> dict[str, Any]:
    """Store the answer (single use), audit it and emit ``survey.answered``.

    Raises :class:`SurveyUnavailable` for an unknown, answered or expired survey and
    :class:`InvalidAnswer` for a score out of range or an unknown choice.
    """
    now = clock.now()
    with engine.store.session() as session:
        survey = session.get(Survey, survey_id)
        state = survey_state(survey, now)
        if state != "open":
            raise SurveyUnavailable(f"survey {survey_id} is {state}", hint="a survey link works once")
        score, answer, comment = validate_answer(survey, score=score, answer=answer, comment=comment)
        won = session.execute(
            update(Survey)
            .where(Survey.id == survey_id, Survey.answered_at.is_(None), Survey.expires_at > now)
            .values(answered_at=now, score=score, answer=answer, comment=comment)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            session.rollback()
            raise SurveyUnavailable(f"survey {survey_id} is answered", hint="a survey link works once")
        info = {"survey_id": survey.id, "journey_id": survey.journey_id, "step_id": survey.step_id,
                "touchpoint": survey.touchpoint, "customer_id": survey.customer_id,
                "question": survey.question}
        shown = score if score is not None else answer
        _audit(session, action="survey.answered", result="answered", actor=actor,
               reason=f"{survey.question} answer {shown}", touchpoint=survey.touchpoint,
               step=survey.step_id, customer_id=survey.customer_id, journey_id=survey.journey_id,
               flow_run_id=None, at=now,
               detail={"survey_id": survey.id, "question": survey.question, "score": score,
                       "answer": answer, "comment": bool(comment)})
    result = {"answered": True, "score": score, "answer": answer, "comment": comment}
    emitted = _emit(
        dispatcher, type="survey.answered", customer_id=info["customer_id"],
        data={"survey_id": info["survey_id"], "journey_id": info["journey_id"],
              "step_id": info["step_id"], "question": info["question"], "score": score,
              "answer": answer, "comment": comment, "result": result},
        event_id=f"survey-{survey_id}", source="web", actor=actor)
    return {**info, **result, "answered_at": now.isoformat(), **emitted}


# --------------------------------------------------------------------------- tasks
def _task_info(task: Task) -> dict[str, Any]:
    return {"task_id": task.id, "journey_id": task.journey_id, "step_id": task.step_id,
            "touchpoint": task.touchpoint, "customer_id": task.customer_id, "team": task.team,
            "title": task.title}


def _refuse_task(session, task_id: str, wanted: str) -> None:
    task = session.get(Task, task_id)
    if task is None:
        raise NotFoundError(f"unknown task {task_id!r}", hint="list them with `touchpoints tasks list`")
    if task.status == "completed":
        raise TaskStateError(f"task {task_id} was already completed by {task.completed_by or 'someone'}"
                             f" at {_iso(task.completed_at)}", hint="nothing more to do")
    if task.status == "cancelled":
        raise TaskStateError(f"task {task_id} was cancelled", hint="its journey no longer needs it")
    if task.status == "acknowledged" and wanted == "acknowledged":
        raise TaskStateError(f"task {task_id} was already acknowledged by "
                             f"{task.acknowledged_by or 'someone'}", hint="complete it when it is done")
    raise TaskStateError(f"task {task_id} is {task.status}; it cannot become {wanted}")


def _clean_by(by: str | None) -> str:
    by = (by or "").strip()
    if not by:
        raise InvalidAnswer("say who you are (your email address)")
    if len(by) > 320 or any(c in by for c in "\r\n"):
        raise InvalidAnswer("that does not look like an email address")
    return by


def acknowledge_task(engine, dispatcher, task_id: str, *, by: str, actor: str) -> dict[str, Any]:
    """Mark an open task acknowledged ("I'm on it") and emit ``task.acknowledged``."""
    by = _clean_by(by)
    now = clock.now()
    with engine.store.session() as session:
        won = session.execute(
            update(Task).where(Task.id == task_id, Task.status == "open")
            .values(status="acknowledged", acknowledged_at=now, acknowledged_by=by)
            .execution_options(synchronize_session=False)).rowcount
        if won != 1:
            session.rollback()
            _refuse_task(session, task_id, "acknowledged")
        task = session.get(Task, task_id)
        session.refresh(task)
        info = _task_info(task)
        _audit(session, action="task.acknowledged", result="acknowledged", actor=actor,
               reason=f"acknowledged by {by}", touchpoint=task.touchpoint, step=task.step_id,
               customer_id=task.customer_id, journey_id=task.journey_id, flow_run_id=None, at=now,
               detail={"task_id": task.id, "team": task.team, "by": by})
    result = {"status": "acknowledged", "acknowledged_by": by, "acknowledged_at": now.isoformat()}
    emitted = _emit(
        dispatcher, type="task.acknowledged", customer_id=info["customer_id"],
        data={"task_id": task_id, "journey_id": info["journey_id"], "step_id": info["step_id"],
              "outcome": None, "acknowledged_by": by, "result": result},
        event_id=f"task-ack-{task_id}", source="web" if actor.startswith("web") else "cli",
        actor=actor)
    return {**info, **result, **emitted}


def complete_task(engine, dispatcher, task_id: str, *, by: str, outcome: str,
                  actor: str) -> dict[str, Any]:
    """Complete an open or acknowledged task with its outcome; emit ``task.completed``."""
    by = _clean_by(by)
    outcome = (outcome or "").strip()
    if not outcome:
        raise InvalidAnswer("write the outcome: what was done, in plain words",
                            hint="some journeys send it to the customer as written")
    if len(outcome) > MAX_OUTCOME:
        raise InvalidAnswer(f"the outcome is longer than {MAX_OUTCOME} characters")
    now = clock.now()
    with engine.store.session() as session:
        won = session.execute(
            update(Task).where(Task.id == task_id, Task.status.in_(OPEN_STATUSES))
            .values(status="completed", completed_at=now, completed_by=by, outcome=outcome)
            .execution_options(synchronize_session=False)).rowcount
        if won != 1:
            session.rollback()
            _refuse_task(session, task_id, "completed")
        task = session.get(Task, task_id)
        session.refresh(task)
        info = _task_info(task)
        overdue = task.due_at < now
        _audit(session, action="task.completed", result="completed", actor=actor,
               reason=f"completed by {by}" + (" (after its due time)" if overdue else ""),
               touchpoint=task.touchpoint, step=task.step_id, customer_id=task.customer_id,
               journey_id=task.journey_id, flow_run_id=None, at=now,
               detail={"task_id": task.id, "team": task.team, "by": by, "overdue": overdue})
    result = {"status": "completed", "completed_by": by, "completed_at": now.isoformat(),
              "outcome": outcome}
    emitted = _emit(
        dispatcher, type="task.completed", customer_id=info["customer_id"],
        data={"task_id": task_id, "journey_id": info["journey_id"], "step_id": info["step_id"],
              "outcome": outcome, "completed_by": by, "result": result},
        event_id=f"task-done-{task_id}", source="web" if actor.startswith("web") else "cli",
        actor=actor)
    return {**info, **result, **emitted}


def list_tasks(session, *, team: str | None = None, statuses: tuple[str, ...] = OPEN_STATUSES,
               ) -> list[Task]:
    query = select(Task)
    if team:
        query = query.where(Task.team == team)
    if statuses:
        query = query.where(Task.status.in_(statuses))
    return list(session.scalars(query.order_by(Task.due_at, Task.id)))


def task_view(task: Task) -> dict[str, Any]:
    """What templates see as ``task`` (same shape as in handoff emails)."""
    return {"id": task.id, "title": task.title, "body": task.body, "team": task.team,
            "due_at": task.due_at, "owner": task.owner, "status": task.status,
            "escalation": list(task.escalations or [])}


def task_links(engine, task_id: str) -> dict[str, str]:
    signer = engine.signer
    return {"task": signer.url("task", task=task_id), "ack": signer.url("task-ack", task=task_id),
            "complete": signer.url("task-complete", task=task_id)}


# --------------------------------------------------------------------------- escalation
def _customer_context(session, customer_id: str | None) -> dict[str, Any]:
    if not customer_id:
        return {}
    row = session.get(Customer, customer_id)
    if row is None:
        return {"id": customer_id, "name": customer_id, "first_name": customer_id, "email": ""}
    from flows.store.customers import to_view

    return to_view(row).as_context()


def _escalation_message(engine, session, task: Task, index: int, level: dict, now: datetime):
    from flows.engine.context import company_context
    from flows.mail.message import build_message

    overdue_by = now - task.due_at
    ctx = {
        "task": task_view(task),
        "customer": _customer_context(session, task.customer_id),
        "level": {"number": index + 1, "of": len(task.escalations or []), "to": level["to"],
                  "after": level.get("after", 0),
                  "overdue_by": human_duration(overdue_by)},
        "links": {**task_links(engine, task.id),
                  "team": _team_url(engine, session, task.team)},
        "company": company_context(engine.config),
        "journey": {"id": task.journey_id, "touchpoint": task.touchpoint},
        "now": now,
    }
    rendered = engine.renderer.render_email(ESCALATION_TEMPLATE, ESCALATION_SUBJECT, ctx)
    d = engine.config.defaults
    return build_message(sender=d.sender, to=level["to"], subject=rendered.subject,
                         text=rendered.text, html=rendered.html,
                         key=f"escalation:{task.id}:{index + 1}", reply_to=d.reply_to,
                         transactional=True, postal_address=d.postal_address,
                         unsubscribe_url=None, preferences_url=None)


def _team_url(engine, session, team: str) -> str:
    from flows.teamlinks import shared_url

    return shared_url(engine, session, team)


def human_duration(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} day{'s' * (days != 1)}"] if days else []
    if hours:
        parts.append(f"{hours} hour{'s' * (hours != 1)}")
    if minutes and not days:
        parts.append(f"{minutes} minute{'s' * (minutes != 1)}")
    return " ".join(parts) or "less than a minute"


def escalate_overdue(engine, *, now: datetime | None = None,
                     actor: str = "system:escalation") -> list[dict[str, Any]]:
    """Email each escalation level of every overdue open/acknowledged task, once per level.

    A level is due ``after`` seconds past the task's due time; ``Task.escalation_level`` counts
    the levels done. A level is claimed with a conditional UPDATE (committed before the SMTP
    conversation, so two runs never both send it and no write lock is held while mailing) and
    released again if the message could not be rendered or the SMTP server refused it, so the
    next run retries it. Returns one entry per level handled: task_id, team, level, to, status
    (sent|failed) and reason.
    """
    now = now or clock.now()
    report: list[dict[str, Any]] = []
    with engine.store.session() as session:
        overdue = session.scalars(select(Task).where(Task.status.in_(OPEN_STATUSES),
                                                     Task.due_at <= now)
                                  .order_by(Task.due_at, Task.id)).all()
        todo = []
        for task in overdue:
            levels = list(task.escalations or [])
            for index in range(task.escalation_level or 0, len(levels)):
                after = float(levels[index].get("after") or 0)
                if task.due_at + timedelta(seconds=after) > now:
                    break  # levels are in order; the later ones are not due either
                todo.append((task.id, index))
    mail = None
    try:
        for task_id, index in todo:
            entry, message, info = _claim_level(engine, task_id, index, now)
            if entry is None:
                continue  # another run took it, or the task was completed meanwhile
            if message is not None:
                try:
                    if mail is None:
                        mail = engine.open_mail_session()
                    mail.send(message)
                except DeliveryError as exc:
                    entry.update(status="failed", reason=exc.message, retry=not exc.permanent)
            with engine.store.session() as session:
                if entry.pop("retry", entry["status"] != "sent"):
                    # release the level: the next run retries it (not after a permanent refusal)
                    session.execute(update(Task).where(Task.id == task_id,
                                                       Task.escalation_level == index + 1)
                                    .values(escalation_level=index)
                                    .execution_options(synchronize_session=False))
                _audit(session, action="task.escalated", result=entry["status"], actor=actor,
                       reason=f"level {index + 1} to {entry['to']}: overdue by "
                              f"{human_duration(now - info['due_at'])}"
                              + (f"; {entry['reason']}" if entry["reason"] else ""),
                       touchpoint=info["touchpoint"], step=info["step_id"],
                       customer_id=info["customer_id"], journey_id=info["journey_id"],
                       flow_run_id=None, at=now,
                       detail={"task_id": task_id, "level": index + 1, "to": entry["to"],
                               "due_at": _iso(info["due_at"])})
            report.append(entry)
    finally:
        if mail is not None:
            mail.close()
    return report


def _claim_level(engine, task_id: str, index: int, now: datetime):
    """Render level ``index`` of a task's escalation and claim it; (None, None, None) if it is
    no longer due to this run."""
    with engine.store.session() as session:
        task = session.get(Task, task_id)
        if task is None or task.status not in OPEN_STATUSES or (task.escalation_level or 0) != index:
            return None, None, None
        level = task.escalations[index]
        info = {"due_at": task.due_at, "touchpoint": task.touchpoint, "step_id": task.step_id,
                "customer_id": task.customer_id, "journey_id": task.journey_id}
        entry = {"task_id": task.id, "team": task.team, "level": index + 1, "to": level["to"],
                 "status": "sent", "reason": ""}
        message = None
        try:
            message = _escalation_message(engine, session, task, index, level, now)
        except TemplateError as exc:
            entry.update(status="failed", reason=exc.message, retry=True)
        claimed = session.execute(
            update(Task).where(Task.id == task_id, Task.escalation_level == index,
                               Task.status.in_(OPEN_STATUSES))
            .values(escalation_level=index + 1)
            .execution_options(synchronize_session=False)).rowcount
        if claimed != 1:
            session.rollback()
            return None, None, None
    return entry, message, info


# --------------------------------------------------------------------------- preferences
@dataclass
class PreferenceResult:
    """What a preference change did: ``changed`` {category: subscribed}, ``refused``
    {category: why}, ``unchanged`` categories."""

    customer_id: str
    changed: dict[str, bool] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refused

    def as_dict(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "changed": self.changed,
                "refused": self.refused, "unchanged": self.unchanged}


def transactional_refusal(config, category: str) -> str:
    description = config.categories[category].description or category
    return (f"{description} are essential service messages: they cannot be turned off "
            "while you are a customer")


def subscriptions(session, config, customer_id: str) -> dict[str, bool]:
    """{category: subscribed} for every category (no row means subscribed)."""
    rows = {p.category: p.subscribed for p in
            session.scalars(select(Preference).where(Preference.customer_id == customer_id))}
    return {name: True if cat.transactional else rows.get(name, True)
            for name, cat in config.categories.items()}


def _apply(engine, customer_id: str, wanted: dict[str, bool], *, source: str,
           actor: str) -> PreferenceResult:
    from flows.store.customers import set_preference

    config = engine.config
    now = clock.now()
    result = PreferenceResult(customer_id=customer_id)
    with engine.store.session() as session:
        if session.get(Customer, customer_id) is None:
            raise NotFoundError(f"unknown customer {customer_id!r}",
                                hint="list customers with `touchpoints customers list`")
        current = subscriptions(session, config, customer_id)
        for category, subscribed in wanted.items():
            subscribed = bool(subscribed)
            cat = config.categories.get(category)
            if cat is None:
                result.refused[category] = f"there is no email category {category!r}"
            elif cat.transactional and not subscribed:
                result.refused[category] = transactional_refusal(config, category)
            elif cat.transactional or current.get(category) == subscribed:
                result.unchanged.append(category)
            elif set_preference(session, customer_id, category, subscribed, source=source,
                                actor=actor):  # audited there as preference.changed
                result.changed[category] = subscribed
            else:
                result.unchanged.append(category)
        for category, why in result.refused.items():
            _audit(session, action="preference.changed", result="refused", actor=actor,
                   reason=f"{category}: {why} ({source})", touchpoint=None, step=None,
                   customer_id=customer_id, journey_id=None, flow_run_id=None, at=now,
                   detail={"category": category, "subscribed": False, "source": source})
    return result


def unsubscribe(engine, customer_id: str, category: str, *, source: str,
                actor: str) -> PreferenceResult:
    """Turn one category off. Transactional categories are refused (see ``result.refused``)."""
    return _apply(engine, customer_id, {category: False}, source=source, actor=actor)


def set_preferences(engine, customer_id: str, choices: dict[str, bool], *, actor: str,
                    source: str = "preferences-page") -> PreferenceResult:
    """Set several categories at once; turning a transactional one off is refused."""
    return _apply(engine, customer_id, choices, source=source, actor=actor)
