"""The curated public surface of ``estimator`` is pinned."""

from __future__ import annotations

import estimator


def test_public_surface_is_pinned() -> None:
    assert sorted(estimator.__all__) == sorted(
        [
            "GPU",
            "Attention",
            "CatalogError",
            "Checkpointing",
            "DType",
            "Device",
            "Estimate",
            "LoraSpec",
            "Loss",
            "Method",
            "Optimizer",
            "Problem",
            "QuantSpec",
            "QuantType",
            "Sharding",
            "SpecError",
            "TrainingSpec",
            "TunecastError",
            "UnknownGPUError",
            "UnknownModelError",
            "check_spec",
            "estimate",
            "find_gpu",
            "find_model",
            "gpu_catalog",
            "gpu_ids",
            "model_catalog",
            "resolve_model",
            "Bill",
            "CostReport",
            "CostRequest",
            "Decision",
            "DecisionRequest",
            "Gap",
            "Programme",
            "Route",
            "decide",
            "tco",
        ]
    )
    for name in estimator.__all__:
        assert hasattr(estimator, name)


def test_estimate_of_validated_dict_gives_spec_json_shape() -> None:
    d = {"model": "meta-llama/Llama-3.1-8B", "method": "qlora", "gpu": "h100-sxm-80gb", "batch_size": 4}
    out = estimator.estimate(estimator.TrainingSpec.model_validate(d)).model_dump(mode="json")
    assert set(out) >= {
        "spec",
        "params",
        "memory",
        "gpu",
        "fits",
        "headroom_bytes",
        "throughput",
        "calibration",
        "assumptions",
    }
    mem = out["memory"]
    for key in (
        "weights",
        "quant_constants",
        "trainable_params",
        "gradients",
        "optimizer_states",
        "activations",
        "transient",
        "peak_phase",
        "peak_allocated",
        "peak_reserved",
        "cuda_context",
        "peak_device",
    ):
        assert key in mem
    assert out["params"] == {"total": 8030261248, "trainable": 41943040, "quantized": 6979321856}
    assert out["spec"]["lora"]["r"] == 16 and out["spec"]["quantization"]["type"] == "nf4"
    assert out["spec"]["gradient_checkpointing"] is True
    assert out["calibration"]["source"] in ("default", "fitted")
