"""`estimate cost` and `estimate decide` as a user calls them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from estimator.tco import tco
from service.cli import app

runner = CliRunner()
BASE = [
    "cost",
    "--model",
    "meta-llama/Llama-3.1-8B",
    "--method",
    "lora",
    "--gpu",
    "h100-sxm-80gb",
    "--examples",
    "10000",
    "--tokens-per-example",
    "1000",
    "--epochs",
    "3",
]
TRAINING = {"model": "meta-llama/Llama-3.1-8B", "method": "lora", "gpu": "h100-sxm-80gb"}
DATASET = {"examples": 10_000, "tokens_per_example": 1_000, "epochs": 3}


def test_cost_json_has_the_bill_and_alternatives_and_equals_the_library() -> None:
    r = runner.invoke(app, [*BASE, "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["bill"]["gpu_hours_per_run"] > 0 and got["bill"]["total"] > 0
    assert {a["kind"] for a in got["alternatives"]} == {"hosted_fine_tuning", "rag"}
    want = tco({"training": TRAINING, "programme": {"dataset": DATASET}}).model_dump(mode="json")
    assert got == want


def test_cost_table_shows_lines_totals_alternatives_and_calibration() -> None:
    r = runner.invoke(app, BASE)
    assert r.exit_code == 0, r.output
    for word in (
        "training runs",
        "human labelling",
        "retraining compute",
        "total",
        "GPU-hours per run",
        "side by side",
        "retrieval (RAG)",
        "together_ai",
    ):
        assert word in r.output, word


def test_cost_reads_a_yaml_spec_and_flags_override_it(tmp_path: Path) -> None:
    f = tmp_path / "programme.yaml"
    f.write_text(
        "training:\n  model: meta-llama/Llama-3.1-8B\n  method: lora\n  gpu: h100-sxm-80gb\n"
        "programme:\n  dataset: {examples: 10000, tokens_per_example: 1000, epochs: 3}\n"
        "  horizon_months: 6\n  engineering: {hours: 10, hourly_rate: 90}\n"
    )
    r = runner.invoke(app, ["cost", "--spec", str(f), "--horizon-months", "24", "--gpu-price", "4", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["bill"]["horizon_months"] == 24
    assert got["bill"]["compute"]["gpu_price_per_hour"] == 4
    eng = next(ln for ln in got["bill"]["lines"] if ln["name"] == "engineering")
    assert eng["amount"] == 900


def test_cost_spot_tier_uses_the_low_catalog_price() -> None:
    r = runner.invoke(app, [*BASE, "--price-tier", "spot", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["bill"]["compute"]["gpu_price_per_hour"] == 1.85


def test_cost_bad_input_exits_2_listing_every_problem_without_traceback() -> None:
    r = runner.invoke(
        app,
        [
            "cost",
            "--model",
            "meta-llama/Llama-3.1-8B",
            "--gpu",
            "gtx-9000",
            "--examples",
            "-5",
            "--epochs",
            "0",
            "--horizon-months",
            "0",
        ],
    )
    assert r.exit_code == 2
    assert "4 problem(s)" in r.output and "Traceback" not in r.output
    for field in ("training.gpu", "programme.dataset.examples", "programme.dataset.epochs", "programme.horizon_months"):
        assert field in r.output, field


def test_cost_without_model_or_gpu_says_so() -> None:
    r = runner.invoke(app, ["cost"])
    assert r.exit_code == 2 and "training" in r.output and "Traceback" not in r.output


def test_cost_user_price_file_overrides(tmp_path: Path) -> None:
    f = tmp_path / "prices.json"
    fireworks = {"training_per_1m_tokens": [{"size": "up to 16B", "price": 0.25}], "as_of": "2026-12-01"}
    f.write_text(json.dumps({"hosted_fine_tuning": {"fireworks_ai": fireworks}}))
    r = runner.invoke(app, [*BASE, "--prices", str(f), "--json"])
    assert r.exit_code == 0, r.output
    fireworks = next(a for a in json.loads(r.stdout)["alternatives"] if "fireworks" in a["name"])
    run = next(ln for ln in fireworks["lines"] if ln["name"] == "hosted training runs")
    assert run["unit_price"] == 0.25 and run["as_of"] == "2026-12-01"


def test_cost_bad_price_file_is_listed_with_the_other_problems(tmp_path: Path) -> None:
    f = tmp_path / "prices.json"
    f.write_text("{not json")
    r = runner.invoke(app, [*BASE, "--prices", str(f), "--horizon-months", "0"])
    assert r.exit_code == 2
    assert "2 problem(s)" in r.output and "--prices" in r.output and "horizon_months" in r.output


def test_decide_json_recommends_and_says_what_would_change_it() -> None:
    r = runner.invoke(
        app,
        [
            "decide",
            "--goal",
            "answer in our brand tone, as JSON",
            "--gap",
            "behaviour",
            "--prompting-tried",
            "--no-has-eval-set",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["recommendation"] == "lora" and d["proceed"] is False
    assert d["would_change"] == ["has_eval_set=true would let the fine-tune proceed"]


def test_decide_ambiguous_goal_asks_for_the_route() -> None:
    r = runner.invoke(app, ["decide", "--goal", "make it better"])
    assert r.exit_code == 0, r.output
    assert "need more input" in r.output and "route explicitly" in r.output


def test_decide_explicit_route_and_bad_values() -> None:
    r = runner.invoke(app, ["decide", "--route", "rag", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["recommendation"] == "rag"
    r = runner.invoke(app, ["decide", "--route", "finetune"])
    assert r.exit_code == 2 and "Traceback" not in r.output
