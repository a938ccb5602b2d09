"""survey: email an NPS, CSAT or custom question with a signed, expiring, single-use link."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator
from sqlalchemy import select

from flows.steps import register
from flows.steps.base import (
    CategoryRef,
    Defer,
    Duration,
    Header,
    Member,
    MessageSpec,
    Next,
    Outcome,
    StepConfig,
    StepContext,
    StepKind,
    TemplateName,
    Text,
)
from flows.steps.email import ENDED, send_all
from flows.store.tables import Survey

DEFAULT_TEXT = {
    "nps": "How likely are you to recommend {{ company.name }} to a friend or colleague?",
    "csat": "How satisfied are you with the service you received from {{ company.name }}?",
}
SCALES = {"nps": (0, 10), "csat": (1, 5)}


class SurveyStep(StepConfig):
    """Send a survey. The answer lands in ``steps.<id>.score`` (NPS 0–10, CSAT 1–5) or
    ``steps.<id>.answer`` (custom), with ``steps.<id>.comment``; pair it with a
    ``wait_for: survey.answered`` step to act on it."""

    kind: Literal["survey"] = "survey"
    question: Literal["nps", "csat", "custom"]
    text: Text | None = Field(None, description="Question wording; required for custom.")
    choices: list[str] = Field(default_factory=list, description="Answers of a custom question.")
    subject: Header
    template: TemplateName
    category: CategoryRef = "surveys"
    expires: Duration = timedelta(days=14)

    @model_validator(mode="after")
    def _custom_needs_text(self) -> SurveyStep:
        if self.question == "custom" and (not self.text or len(self.choices) < 2):
            raise ValueError("a custom question needs 'text' and at least two 'choices'")
        if self.question != "custom" and self.choices:
            raise ValueError("'choices' is only for question: custom")
        return self

    def describe(self) -> str:
        return f"survey ({self.question.upper() if self.question != 'custom' else 'custom'}): {self.template}"

    def messages(self) -> list[MessageSpec]:
        low, high = SCALES.get(self.question, (None, None))
        return [MessageSpec(to="customer", template=self.template, subject=self.subject,
                            category=self.category, extra={
                                "links": {"survey": "http://127.0.0.1:8000/s/preview"},
                                "survey": {"question": self.question,
                                           "text": self.text or DEFAULT_TEXT[self.question],
                                           "low": low, "high": high, "choices": list(self.choices),
                                           "expires_at": "2026-01-15T09:00:00+00:00"}})]

    def sample_result(self, examples=None) -> dict:
        return {"sent": True, "status": "sent", "url": "http://127.0.0.1:8000/s/sample",
                "survey_id": "sample", "answered": True, "score": 9, "answer": None,
                "comment": "Great install."}


def run(*, config: SurveyStep, ctx: StepContext, members: list[Member]) -> dict[int, Outcome]:
    keys = {m.id: f"{ctx.journey_id}:{config.id}:{m.customer.id}" for m in members}
    surveys = {s.key: s for s in ctx.session.scalars(  # one query for the batch
        select(Survey).where(Survey.key.in_(sorted(set(keys.values())))))}
    low, high = SCALES.get(config.question, (None, None))
    requests, kept = [], []
    for member in members:
        survey = surveys.get(keys[member.id])
        if survey is None:
            survey = surveys[keys[member.id]] = Survey(
                id=uuid.uuid4().hex, key=keys[member.id], journey_id=ctx.journey_id,
                touchpoint=ctx.touchpoint.name, step_id=config.id, customer_id=member.customer.id,
                question=config.question,
                text=ctx.render(config.text or DEFAULT_TEXT[config.question], member, header=True),
                choices=list(config.choices), created_at=ctx.now, expires_at=ctx.now + config.expires,
            )
            ctx.session.add(survey)
        # the link lives ``expires`` from the moment it is sent, not from when the survey was
        # first tried: a survey deferred to the send window's opening arrives with its full life
        sent_with, survey.expires_at = survey.expires_at, ctx.now + config.expires
        url = ctx.link("survey", survey=survey.id)
        kept.append((survey, sent_with, url))
        requests.append(dict(
            member=member, to="customer", template=config.template, subject=config.subject,
            category=config.category, step_id=config.id,
            extra={"links": {"survey": url},
                   "survey": {"question": config.question, "text": survey.text, "low": low,
                              "high": high, "choices": list(config.choices),
                              "expires_at": survey.expires_at}}))
    outcomes: dict[int, Outcome] = {}
    for member, (survey, sent_with, url), delivery in zip(
            members, kept, send_all(ctx, requests), strict=True):
        if delivery.status == "duplicate":  # it went out before, with the expiry it has
            survey.expires_at = sent_with
        if delivery.status == ENDED:  # the journey ended meanwhile: nothing more for them
            continue
        if delivery.status == "deferred":
            outcomes[member.id] = Defer(until=delivery.until, reason=delivery.reason)
            continue
        outcomes[member.id] = Next({"sent": delivery.ok, "status": delivery.status,
                                    "reason": delivery.reason, "url": url, "survey_id": survey.id,
                                    "answered": False, "score": None, "answer": None,
                                    "comment": None})
    return outcomes


register(StepKind(name="survey", config=SurveyStep, run=run,
                  summary="Email an NPS (0–10), CSAT (1–5) or custom question with a signed, "
                          "expiring, single-use link to the survey page."))
