"""The `estimate` CLI as a user calls it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from estimator import TrainingSpec, estimate
from service.cli import app

runner = CliRunner()


def test_memory_json_equals_library_estimate() -> None:
    r = runner.invoke(
        app,
        [
            "memory",
            "--model",
            "meta-llama/Llama-3.1-8B",
            "--method",
            "qlora",
            "--gpu",
            "rtx-4090",
            "--batch-size",
            "2",
            "--seq-len",
            "2048",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    spec = {
        "model": "meta-llama/Llama-3.1-8B",
        "method": "qlora",
        "gpu": "rtx-4090",
        "batch_size": 2,
        "seq_len": 2048,
    }
    assert got == estimate(TrainingSpec.model_validate(spec)).model_dump(mode="json")


def test_memory_table_shows_every_term_and_the_verdict() -> None:
    r = runner.invoke(app, ["memory", "--model", "Qwen/Qwen3-8B", "--method", "lora", "--gpu", "l4"])
    assert r.exit_code == 0, r.output
    for word in ("weights", "optimizer_states", "activations", "peak_allocated", "peak_device", "l4"):
        assert word in r.output


def test_spec_file_yaml_with_flag_override(tmp_path: Path) -> None:
    f = tmp_path / "run.yaml"
    f.write_text("model: Qwen/Qwen3-8B\nmethod: lora\nlora:\n  r: 8\n  targets: [q_proj, v_proj]\nbatch_size: 2\n")
    r = runner.invoke(app, ["memory", "--spec", str(f), "--batch-size", "4", "--json"])
    assert r.exit_code == 0, r.output
    spec = json.loads(r.stdout)["spec"]
    assert spec["batch_size"] == 4 and spec["lora"]["r"] == 8 and spec["lora"]["targets"] == ["q_proj", "v_proj"]


def test_bad_input_exits_2_listing_every_problem_without_traceback() -> None:
    r = runner.invoke(app, ["memory", "--model", "nope/nope", "--gpu", "gtx-1", "--batch-size", "0"])
    assert r.exit_code == 2
    assert "3 problem(s)" in r.output and "Traceback" not in r.output
    for field in ("model", "gpu", "batch_size"):
        assert field in r.output


def test_bad_yaml_file_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("model: [unclosed\n")
    r = runner.invoke(app, ["memory", "--spec", str(f)])
    assert r.exit_code == 2 and "not valid YAML" in r.output


def test_models_and_gpus_list_the_catalogs() -> None:
    r = runner.invoke(app, ["models", "--json"])
    assert r.exit_code == 0
    ids = {m["id"] for m in json.loads(r.stdout)}
    assert {"meta-llama/Llama-3.1-8B", "deepseek-ai/DeepSeek-R1", "openai/gpt-oss-20b"} <= ids
    r = runner.invoke(app, ["gpus", "--json"])
    assert r.exit_code == 0
    gids = {g["id"] for g in json.loads(r.stdout)}
    assert {"h100-sxm-80gb", "rtx-4090", "a100-sxm-40gb", "h200-sxm-141gb"} <= gids
