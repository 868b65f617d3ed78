"""The decision gate (estimator.decision): goal routing, the three questions, asking over guessing."""

from __future__ import annotations

import pytest

from estimator.decision import DecisionRequest, Route, decide, match_goal
from estimator.errors import SpecError

READY = {"gap": "behaviour", "prompting_tried": True, "has_eval_set": True}


@pytest.mark.parametrize(
    ("goal", "route"),
    [
        ("answer questions about our proprietary product documentation, which changes weekly", Route.RAG),
        ("always reply in a consistent format and our brand tone", Route.LORA),
        ("better multi-step reasoning on verifiable math problems", Route.RFT),
        ("a quick tweak on a small budget", Route.PROMPTING),
        ("regulated hospital data: on-prem only, no data egress", Route.SMALL_MODEL),
    ],
)
def test_each_goal_in_the_routing_table_gets_its_route(goal: str, route: Route) -> None:
    d = decide(goal=goal)
    assert d.status == "recommendation" and d.route_source == "goal"
    assert d.recommendation is route
    assert list(d.matched) == [route.value]


@pytest.mark.parametrize("route", [Route.LORA, Route.RFT, Route.SMALL_MODEL])
def test_a_fine_tuning_route_with_every_gate_answer_yes_proceeds(route: Route) -> None:
    d = decide(route=route, **READY)
    assert d.recommendation is route and d.proceed
    assert not d.questions


@pytest.mark.parametrize("goal", ["make the model better", "", "improve the answers"])
def test_a_goal_naming_no_route_asks_for_the_explicit_route(goal: str) -> None:
    d = decide(goal=goal, prompting_tried=True)
    assert d.status == "needs_input" and d.recommendation is None and not d.proceed
    assert any("route explicitly" in q for q in d.questions)


def test_a_goal_naming_several_routes_asks_between_them_instead_of_guessing() -> None:
    d = decide(goal="on-prem model that answers in our JSON format", **READY)
    assert d.status == "needs_input" and d.recommendation is None
    assert set(d.matched) == {"lora", "small_model"}
    assert any("lora, small_model" in q for q in d.questions)


def test_an_explicit_route_settles_an_ambiguous_goal() -> None:
    d = decide(goal="on-prem model that answers in our JSON format", route="small_model", **READY)
    assert d.recommendation is Route.SMALL_MODEL and d.route_source == "explicit" and d.proceed


def test_a_knowledge_gap_sends_fine_tuning_to_retrieval_and_says_what_would_change_it() -> None:
    d = decide(route="lora", gap="knowledge", prompting_tried=True, has_eval_set=True)
    assert d.recommendation is Route.RAG
    assert d.would_change == ["gap=behaviour would keep lora"]


def test_a_knowledge_gap_alone_routes_to_retrieval() -> None:
    d = decide(gap="knowledge")
    assert d.recommendation is Route.RAG and d.route_source == "gap"


def test_untried_prompting_comes_first() -> None:
    d = decide(route="rft", gap="behaviour", prompting_tried=False, has_eval_set=True)
    assert d.recommendation is Route.PROMPTING and d.proceed
    assert "prompting_tried=true would move on to rft" in d.would_change


def test_no_eval_set_holds_the_fine_tune_until_one_is_built() -> None:
    d = decide(route="lora", gap="behaviour", prompting_tried=True, has_eval_set=False)
    assert d.recommendation is Route.LORA and not d.proceed
    assert any("eval set" in r for r in d.reasons)
    assert d.would_change == ["has_eval_set=true would let the fine-tune proceed"]


def test_unanswered_gate_questions_are_asked_with_what_would_change() -> None:
    d = decide(route="lora")
    assert d.recommendation is Route.LORA and d.status == "recommendation"
    assert len(d.questions) == 3
    assert "gap=knowledge would switch to rag" in d.would_change
    assert "prompting_tried=false would switch to prompting first" in d.would_change


def test_a_retrieval_goal_with_a_behaviour_gap_asks_instead_of_guessing() -> None:
    d = decide(goal="keep up with our changing policies", gap="behaviour")
    assert d.status == "needs_input"
    assert any("prompting, lora or rft" in q for q in d.questions)


def test_keywords_match_whole_words_only() -> None:
    assert match_goal("more information please") == {}
    assert Route.LORA in match_goal("Output must be JSON.")
    assert match_goal("on-prem, no data egress")[Route.SMALL_MODEL] == ["on-prem", "no data egress"]


def test_request_model_mapping_and_keywords_agree() -> None:
    a = decide(DecisionRequest(route=Route.LORA, gap=None, has_eval_set=False))
    b = decide({"route": "lora", "has_eval_set": False})
    c = decide(route="lora", has_eval_set=False)
    d = decide({"route": "rag"}, route="lora", has_eval_set=False)
    assert a == b == c == d


def test_bad_decision_input_lists_every_problem() -> None:
    with pytest.raises(SpecError) as exc:
        decide({"route": "finetune", "gap": "vibes", "prompting_tried": "perhaps", "colour": "red"})
    assert {p.field for p in exc.value.problems} == {"route", "gap", "prompting_tried", "colour"}
    with pytest.raises(SpecError):
        decide(goal="x" * 5000)
