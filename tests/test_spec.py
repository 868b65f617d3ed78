"""Spec validation: defaults are filled, and bad input lists every problem at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from estimator import SpecError, TrainingSpec, check_spec, estimate
from estimator.models import resolve_model


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(SpecError) as exc:
        check_spec({"model": "no/such-model", "gpu": "gtx-9999", "batch_size": -1, "seq_len": 0, "bogus": 1})
    fields = sorted(p.field for p in exc.value.problems)
    assert fields == ["batch_size", "bogus", "gpu", "model", "seq_len"]


def test_lora_settings_on_full_fine_tune_are_rejected() -> None:
    with pytest.raises(SpecError) as exc:
        check_spec({"model": "Qwen/Qwen3-8B", "method": "full", "lora": {"r": 8}, "quantization": {"type": "nf4"}})
    assert {p.field for p in exc.value.problems} == {"lora", "quantization"}


def test_rank_larger_than_a_layer_is_rejected() -> None:
    with pytest.raises(SpecError) as exc:
        check_spec({"model": "HuggingFaceTB/SmolLM2-135M", "lora": {"r": 4096}})
    assert [p.field for p in exc.value.problems] == ["lora.r"]


def test_unknown_lora_target_names_the_known_ones() -> None:
    with pytest.raises(SpecError) as exc:
        check_spec({"model": "meta-llama/Llama-3.1-8B", "lora": {"targets": ["q_proj", "wq"]}})
    (p,) = exc.value.problems
    assert p.field == "lora.targets" and "wq" in p.message and "q_proj" in p.message


def test_unsupported_model_type_names_supported_families() -> None:
    with pytest.raises(SpecError) as exc:
        check_spec({"model": {"config": {"model_type": "bert", "hidden_size": 8}}})
    (p,) = exc.value.problems
    assert "bert" in p.message and "llama" in p.message and "deepseek_v3" in p.message


def test_catalog_lookup_is_case_insensitive() -> None:
    assert resolve_model("META-LLAMA/llama-3.1-8b")[0] == "meta-llama/Llama-3.1-8B"


def test_local_config_json_path_resolves(tmp_path: Path) -> None:
    cfg = resolve_model("Qwen/Qwen3-0.6B")[1]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    by_path = estimate(TrainingSpec.model_validate({"model": str(path)}))
    by_id = estimate(TrainingSpec.model_validate({"model": "Qwen/Qwen3-0.6B"}))
    assert by_path.memory.peak_allocated == by_id.memory.peak_allocated
    inline = estimate(TrainingSpec.model_validate({"model": {"config": cfg}}))
    assert inline.memory.peak_allocated == by_id.memory.peak_allocated


def test_method_defaults_are_filled_and_reported() -> None:
    spec = TrainingSpec.model_validate({"model": "Qwen/Qwen3-8B", "method": "qlora"})
    assert spec.lora is not None and spec.lora.adapter_dtype.value == "fp32"
    assert spec.quantization is not None and spec.quantization.double_quant
    full = TrainingSpec.model_validate({"model": "Qwen/Qwen3-8B", "method": "full"})
    assert full.lora is None and full.quantization is None


def test_gpu_spellings_resolve() -> None:
    from estimator import find_gpu

    assert find_gpu("4090") is not None and find_gpu("4090").id == "rtx-4090"  # type: ignore[union-attr]
    assert find_gpu("A100 80GB").id == "a100-sxm-80gb"  # type: ignore[union-attr]
    assert find_gpu("H100").id == "h100-sxm-80gb"  # type: ignore[union-attr]
    assert find_gpu("A100-SXM4-40GB").id == "a100-sxm-40gb"  # type: ignore[union-attr]
    assert find_gpu("gtx-9999") is None
