"""The decision gate: should this gap be closed by fine-tuning at all, and by which kind?

Goal routing (which tool fits which goal)::

    changing or proprietary knowledge         -> rag          retrieval over your documents
    consistent format, tone or skill          -> lora         LoRA / QLoRA supervised fine-tuning
    reasoning on verifiable tasks             -> rft          reinforcement fine-tuning with a grader
    a quick tweak on a small budget           -> prompting    prompt engineering first
    regulated, on-prem, no data egress        -> small_model  a fine-tuned small model you host

The route is, in order: the explicit ``route``; else the one route a free-text ``goal`` names by
keyword (:data:`KEYWORDS`); else ``rag`` when the gap is knowledge. A goal that names no route or
several is *not* guessed at: the answer asks for the explicit route. Keyword matching is literal:
negation ("not on-prem") and paraphrase are left out on purpose, so the table stays predictable.

Then the gate's three questions, applied to the fine-tuning routes (lora, rft, small_model):

1. Is the gap knowledge or behaviour? Knowledge -> rag: fine-tuning shapes behaviour and is a poor,
   costly way to store facts that change (on-prem constraints keep the retriever on-prem).
2. Have prompting and retrieval been exhausted? No -> prompting first: it is the cheapest check
   that the gap is real, and its prompts become the baseline the fine-tune must beat.
3. Is there an eval set? No -> keep the route but do not proceed: build a held-out eval set first,
   since without one nobody can tell whether the fine-tune helped (and rft needs its grader anyway).

An unanswered question never blocks; it is listed with the answer that would change the
recommendation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from estimator.errors import Problem, SpecError


class Route(StrEnum):
    """A way to close the gap."""

    RAG = "rag"
    """Retrieval-augmented generation over your documents."""
    LORA = "lora"
    """LoRA / QLoRA supervised fine-tuning on examples of the wanted behaviour."""
    RFT = "rft"
    """Reinforcement fine-tuning against a grader on verifiable tasks."""
    PROMPTING = "prompting"
    """Prompt engineering (instructions, few-shot examples) with the base model."""
    SMALL_MODEL = "small_model"
    """A small open model, fine-tuned and hosted inside your boundary."""


class Gap(StrEnum):
    """What the model lacks."""

    KNOWLEDGE = "knowledge"
    """Facts it does not have (they change, or are yours)."""
    BEHAVIOUR = "behaviour"
    """A way of answering: format, tone, a skill, reasoning."""


FINE_TUNING_ROUTES = frozenset({Route.LORA, Route.RFT, Route.SMALL_MODEL})

ROUTE_LABELS: dict[Route, str] = {
    Route.RAG: "retrieval (RAG) over your documents",
    Route.LORA: "LoRA / QLoRA supervised fine-tuning",
    Route.RFT: "reinforcement fine-tuning with a grader",
    Route.PROMPTING: "prompting first",
    Route.SMALL_MODEL: "a fine-tuned small model hosted on-prem",
}

KEYWORDS: dict[Route, tuple[str, ...]] = {
    Route.RAG: (
        "knowledge", "changing", "changes", "up-to-date", "up to date", "latest", "proprietary",
        "internal docs", "documents", "documentation", "wiki", "knowledge base", "facts", "faq",
        "policies", "catalog", "catalogue", "retrieval", "search",
    ),
    Route.LORA: (
        "format", "formatting", "tone", "style", "voice", "persona", "brand", "json", "schema",
        "structured output", "consistent", "consistently", "skill", "classify", "classification",
        "extraction", "template",
    ),
    Route.RFT: (
        "reasoning", "verifiable", "verifier", "grader", "reward", "math", "theorem", "unit tests",
        "multi-step", "chain of thought", "puzzle", "correctness",
    ),
    Route.PROMPTING: (
        "quick", "tweak", "small budget", "low budget", "limited budget", "tight budget", "cheap",
        "prototype", "proof of concept", "poc", "minor", "experiment",
    ),
    Route.SMALL_MODEL: (
        "regulated", "regulation", "on-prem", "on prem", "on-premises", "on-premise", "air-gapped",
        "airgapped", "no data egress", "data egress", "egress", "hipaa", "gdpr", "data residency",
        "sovereign", "offline", "private cloud",
    ),
}  # fmt: skip
"""Literal keywords (case-insensitive, whole words) that tie a free-text goal to a route."""

MAX_GOAL_CHARS = 2000

RouteSource = Literal["explicit", "goal", "gap", "none"]
"""Where the route came from: the explicit route, the goal's keywords, the knowledge gap, nowhere."""


class DecisionRequest(BaseModel):
    """The gate's inputs. Every field is optional; what is missing is asked, not assumed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    goal: str | None = Field(None, max_length=MAX_GOAL_CHARS, description="What the model should do better.")
    route: Route | None = Field(None, description="The route, when you know it (overrides the goal).")
    gap: Gap | None = Field(None, description="Is the gap knowledge or behaviour?")
    prompting_tried: bool | None = Field(None, description="Have prompting and retrieval been exhausted?")
    has_eval_set: bool | None = Field(None, description="Is there a held-out eval set?")


class Decision(BaseModel):
    """The gate's answer: a recommendation with its reasons, or the question it needs answered."""

    status: Literal["recommendation", "needs_input"]
    recommendation: Route | None
    label: str | None
    proceed: bool
    """True only when the recommendation can start now (a fine-tuning route with no blocker)."""
    route_source: RouteSource
    matched: dict[str, list[str]]
    """Routes the goal's keywords point to, with the keywords found."""
    reasons: list[str]
    would_change: list[str]
    """Answers that would change the recommendation."""
    questions: list[str]
    """What to answer next (unanswered gate questions, or the explicit route when ambiguous)."""


def check_decision_request(data: DecisionRequest | Mapping[str, Any]) -> DecisionRequest:
    """Validate raw input, or raise :class:`SpecError` listing every problem at once."""
    if isinstance(data, DecisionRequest):
        return data
    if not isinstance(data, Mapping):
        raise SpecError([Problem("", "a decision request must be a JSON/YAML object")])
    try:
        return DecisionRequest.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(x) for x in err["loc"])
            msg = "unknown field" if err["type"] == "extra_forbidden" else str(err["msg"])
            problems.append(Problem(loc, msg))
        raise SpecError(problems) from None


@cache
def _patterns() -> dict[Route, list[tuple[str, re.Pattern[str]]]]:
    return {
        route: [(w, re.compile(rf"(?<![\w-]){re.escape(w)}(?![\w-])", re.IGNORECASE)) for w in words]
        for route, words in KEYWORDS.items()
    }


def match_goal(goal: str) -> dict[Route, list[str]]:
    """The routes a free-text goal names, each with the keywords found (in table order)."""
    found: dict[Route, list[str]] = {}
    for route, pats in _patterns().items():
        hits = [w for w, pat in pats if pat.search(goal)]
        hits = [w for w in hits if not any(w != h and w in h for h in hits)]  # "egress" in "no data egress"
        if hits:
            found[route] = hits
    return found


def decide(request: DecisionRequest | Mapping[str, Any] | None = None, /, **answers: Any) -> Decision:
    """Run the decision gate.

    Pass a :class:`DecisionRequest`, its raw form, or keyword answers
    (``decide(goal="...", gap="behaviour", prompting_tried=True, has_eval_set=False)``).
    Bad input raises :class:`SpecError` with every problem.
    """
    raw: DecisionRequest | Mapping[str, Any]
    if request is None:
        raw = answers
    elif answers:
        base = request.model_dump() if isinstance(request, DecisionRequest) else dict(request)
        raw = {**base, **answers}
    else:
        raw = request
    req = check_decision_request(raw)
    matched = match_goal(req.goal) if req.goal else {}
    matched_json = {r.value: words for r, words in matched.items()}

    route, source = _route(req, matched)
    if route is None:
        return _ask(req, matched, matched_json)
    if route is Route.RAG and req.gap is Gap.BEHAVIOUR:
        return _needs_input(
            source,
            matched_json,
            [
                f"{_from(source)} points to retrieval, but the gap is behaviour: retrieval adds knowledge, "
                "it does not change how the model answers"
            ],
            ["give the route explicitly: prompting, lora or rft"],
        )
    return _gate(req, route, source, matched_json)


def _route(req: DecisionRequest, matched: dict[Route, list[str]]) -> tuple[Route | None, RouteSource]:
    if req.route is not None:
        return req.route, "explicit"
    if len(matched) == 1:
        return next(iter(matched)), "goal"
    if not matched and req.gap is Gap.KNOWLEDGE:
        return Route.RAG, "gap"
    return None, "none"


def _from(source: RouteSource) -> str:
    return {"explicit": "the route you gave", "goal": "your goal", "gap": "the gap"}.get(source, "the input")


def _ask(req: DecisionRequest, matched: dict[Route, list[str]], matched_json: dict[str, list[str]]) -> Decision:
    if len(matched) > 1:
        names = ", ".join(f"{r.value} ({', '.join(w)})" for r, w in matched.items())
        reasons = [f"the goal names several routes: {names}; tunecast does not guess between them"]
        options = ", ".join(r.value for r in matched)
    else:
        reasons = [
            "the goal names no route" if req.goal else "no goal, route or knowledge gap given",
        ]
        options = ", ".join(r.value for r in Route)
    questions = [f"give the route explicitly: one of {options}"]
    if req.gap is None:
        questions.append("is the gap knowledge (facts) or behaviour (format, tone, skill, reasoning)?")
    return _needs_input("none", matched_json, reasons, questions)


def _needs_input(
    source: RouteSource, matched_json: dict[str, list[str]], reasons: list[str], questions: list[str]
) -> Decision:
    return Decision(
        status="needs_input",
        recommendation=None,
        label=None,
        proceed=False,
        route_source=source,
        matched=matched_json,
        reasons=reasons,
        would_change=[],
        questions=questions,
    )


def _gate(req: DecisionRequest, route: Route, source: RouteSource, matched_json: dict[str, list[str]]) -> Decision:
    reasons = [f"{_from(source)} points to {ROUTE_LABELS[route]}"]
    would_change: list[str] = []
    questions: list[str] = []
    proceed = True
    rec = route

    if route in FINE_TUNING_ROUTES:
        if req.gap is Gap.KNOWLEDGE:
            rec, proceed = Route.RAG, True
            reasons.append(
                "the gap is knowledge: fine-tuning shapes behaviour and is a poor, costly store for "
                "facts that change; retrieve them instead"
                + (" (host the retriever on-prem to keep data in)" if route is Route.SMALL_MODEL else "")
            )
            would_change.append(f"gap=behaviour would keep {route.value}")
        elif req.prompting_tried is False:
            rec, proceed = Route.PROMPTING, True
            reasons.append(
                "prompting and retrieval have not been exhausted: try them first; the best prompt is "
                "also the baseline a fine-tune must beat"
            )
            would_change.append(f"prompting_tried=true would move on to {route.value}")
        else:
            if req.gap is Gap.BEHAVIOUR:
                reasons.append("the gap is behaviour, which fine-tuning can change")
            if req.prompting_tried:
                reasons.append("prompting and retrieval have been tried")
            if req.has_eval_set:
                reasons.append("an eval set exists to measure the fine-tune against")
            if req.gap is None:
                questions.append("is the gap knowledge or behaviour?")
                would_change.append("gap=knowledge would switch to rag")
            if req.prompting_tried is None:
                questions.append("have prompting and retrieval been exhausted?")
                would_change.append("prompting_tried=false would switch to prompting first")
            if req.has_eval_set is False:
                proceed = False
                reasons.append(
                    "there is no eval set: build a held-out one first, or nobody can tell whether the "
                    "fine-tune helped" + (" (rft also needs its grader)" if route is Route.RFT else "")
                )
                would_change.append("has_eval_set=true would let the fine-tune proceed")
            elif req.has_eval_set is None:
                questions.append("is there a held-out eval set?")
                would_change.append("has_eval_set=false would hold the fine-tune until one is built")
    elif route is Route.RAG:
        reasons.append("retrieval keeps changing or proprietary knowledge current without retraining")
        if req.gap is None:
            questions.append("is the gap knowledge or behaviour?")
        would_change.append("gap=behaviour would rule retrieval out (give the route explicitly)")
    else:  # prompting
        reasons.append("a prompt change costs hours, not a training programme")
        if req.prompting_tried:
            reasons.append(
                "prompting has been tried already: if it fell short, give the route for the gap "
                "(rag for knowledge, lora for format or tone, rft for verifiable reasoning)"
            )
        would_change.append("an explicit route (lora, rft, rag) once prompting has fallen short")

    return Decision(
        status="recommendation",
        recommendation=rec,
        label=ROUTE_LABELS[rec],
        proceed=proceed,
        route_source=source,
        matched=matched_json,
        reasons=reasons,
        would_change=would_change,
        questions=questions,
    )
