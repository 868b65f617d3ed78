"""Memory terms pinned by hand arithmetic, and the properties every estimate must keep."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from estimator import TrainingSpec, estimate

L8B = "meta-llama/Llama-3.1-8B"
P8B = 8_030_261_248
EMB = 128_256 * 4096  # embed_tokens; the untied lm_head has the same size


def est(**kw: Any) -> Any:
    return estimate(TrainingSpec.model_validate({"model": L8B, **kw}))


def test_full_bf16_adamw_static_terms_are_2_2_4_bytes_per_param() -> None:
    e = est(method="full", batch_size=1, seq_len=512)
    m = e.memory.phases["optimizer_step"]
    assert m.trainable_params == 2 * P8B
    assert m.gradients == 2 * P8B
    assert m.optimizer_states == 4 * P8B
    assert m.transient == 2 * P8B  # foreach AdamW: one copy of the parameters while stepping
    assert e.memory.peak_phase.value == "optimizer_step"


def test_qlora_weights_are_nf4_plus_fp32_upcast_of_unquantized_params() -> None:
    e = est(method="qlora")
    quantized = e.params.quantized
    assert quantized == P8B - 2 * EMB - (32 * 2 + 1) * 4096
    assert e.memory.weights == quantized // 2 + (P8B - quantized) * 4
    # double quant: 8 bits per 64 weights + 32 bits per 64*256 weights
    assert e.memory.quant_constants == round(quantized * (8 / 64 + 32 / (64 * 256)) / 8)


def test_lora_adapters_fp32_with_adamw_states() -> None:
    e = est(method="lora", lora={"r": 16, "targets": "all-linear"})
    n = e.params.trainable
    assert n == 16 * 32 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)
    ph = e.memory.phases["optimizer_step"]
    assert ph.trainable_params == 4 * n and ph.optimizer_states == 8 * n and ph.gradients == 4 * n


def test_paged_optimizer_states_count_on_device_not_in_allocated() -> None:
    plain = est(method="qlora", optimizer="adamw")
    paged = est(method="qlora", optimizer="paged_adamw")
    # bitsandbytes pages state buffers of tensors with >= 1e5 elements only: here the lora_B of
    # gate/up (14336 x 16) and the lora_A of down (16 x 14336), per layer; fp32 states, 8 B each.
    paged_params = 32 * 3 * 14336 * 16
    assert paged.memory.paged_optimizer_states == 8 * paged_params
    assert paged.memory.optimizer_states == 8 * (paged.params.trainable - paged_params)
    assert paged.memory.peak_device - paged.memory.peak_reserved == paged.memory.cuda_context + 8 * paged_params
    assert plain.memory.paged_optimizer_states == 0


def test_cpu_device_has_no_context_and_no_slack() -> None:
    e = est(method="lora", device="cpu")
    assert e.memory.cuda_context == 0
    assert e.memory.peak_allocated == e.memory.peak_reserved == e.memory.peak_device


def test_categories_at_the_peak_sum_to_peak_allocated() -> None:
    for method in ("full", "lora", "qlora"):
        m = est(method=method, batch_size=2, seq_len=1024).memory
        parts = (
            m.weights,
            m.quant_constants,
            m.trainable_params,
            m.gradients,
            m.optimizer_states,
            m.activations,
            m.transient,
        )
        assert sum(parts) == m.peak_allocated


def test_largest_fit_is_the_boundary_of_fits() -> None:
    e = est(method="qlora", gpu="rtx-4090", seq_len=2048, batch_size=1)
    assert e.largest_fit is not None
    b = e.largest_fit.batch_size
    assert b >= 1
    assert est(method="qlora", gpu="rtx-4090", seq_len=2048, batch_size=b).fits is True
    assert est(method="qlora", gpu="rtx-4090", seq_len=2048, batch_size=b + 1).fits is False
    s = e.largest_fit.seq_len
    assert est(method="qlora", gpu="rtx-4090", seq_len=s, batch_size=1).fits is True
    assert est(method="qlora", gpu="rtx-4090", seq_len=s + 8, batch_size=1).fits is False


def test_eager_attention_grows_quadratically_with_sequence() -> None:
    a = est(method="lora", attention="eager", gradient_checkpointing=False, seq_len=1024).memory.activations
    b = est(method="lora", attention="eager", gradient_checkpointing=False, seq_len=4096).memory.activations
    sd = est(method="lora", attention="sdpa", gradient_checkpointing=False, seq_len=4096).memory.activations
    assert b > 4 * a and b > sd


def test_fsdp_shards_static_memory_per_gpu() -> None:
    one = est(method="full", seq_len=512)
    eight = est(method="full", seq_len=512, num_gpus=8, sharding="fsdp")
    assert (
        eight.memory.phases["optimizer_step"].optimizer_states * 8
        == one.memory.phases["optimizer_step"].optimizer_states
    )
    assert eight.memory.peak_allocated < one.memory.peak_allocated / 4


METHODS = st.sampled_from(["full", "lora", "qlora"])
MODELS = st.sampled_from(
    [
        "meta-llama/Llama-3.1-8B",
        "Qwen/Qwen3-8B",
        "google/gemma-2-2b",
        "mistralai/Mixtral-8x7B-v0.1",
        "microsoft/Phi-3-mini-4k-instruct",
        "EleutherAI/pythia-6.9b",
    ]
)
OPTS = st.sampled_from(["adamw", "adamw_8bit", "paged_adamw", "sgd", "lion", "adafactor"])
ATTN = st.sampled_from(["sdpa", "eager", "flash_attention_2"])
LOSS = st.sampled_from(["standard", "chunked", "fused"])


@settings(max_examples=60, deadline=None)
@given(
    model=MODELS,
    method=METHODS,
    opt=OPTS,
    attn=ATTN,
    loss=LOSS,
    ckpt=st.booleans(),
    b=st.integers(1, 16),
    s=st.integers(16, 8192),
    db=st.integers(1, 8),
    ds=st.integers(1, 4096),
)
def test_memory_never_decreases_with_batch_or_sequence(
    model: str, method: str, opt: str, attn: str, loss: str, ckpt: bool, b: int, s: int, db: int, ds: int
) -> None:
    base = dict(model=model, method=method, optimizer=opt, attention=attn, loss=loss, gradient_checkpointing=ckpt)
    m0 = estimate(TrainingSpec.model_validate({**base, "batch_size": b, "seq_len": s})).memory.peak_allocated
    mb = estimate(TrainingSpec.model_validate({**base, "batch_size": b + db, "seq_len": s})).memory.peak_allocated
    ms = estimate(TrainingSpec.model_validate({**base, "batch_size": b, "seq_len": s + ds})).memory.peak_allocated
    assert mb >= m0 and ms >= m0


DENSE = st.sampled_from([
    "meta-llama/Llama-3.1-8B", "Qwen/Qwen3-8B", "google/gemma-2-2b", "microsoft/Phi-3-mini-4k-instruct",
    "EleutherAI/pythia-6.9b",
])  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(model=DENSE, b=st.integers(1, 8), s=st.integers(16, 8192))
def test_qlora_weights_below_lora_below_full(model: str, b: int, s: int) -> None:
    w = {
        m: estimate(TrainingSpec.model_validate({"model": model, "method": m, "batch_size": b, "seq_len": s}))
        for m in ("full", "lora", "qlora")
    }
    full_w = w["full"].memory.phases["optimizer_step"].trainable_params  # all weights are trainable in full
    assert w["qlora"].memory.weights + w["qlora"].memory.quant_constants < w["lora"].memory.weights < full_w + 1


def test_qlora_on_falcon_stays_unquantized_from_transformers_5() -> None:
    """bitsandbytes does not replace FalconLinear (an nn.Linear subclass) in transformers 5 (traced)."""
    falcon = "tiiuae/falcon-7b"
    new = estimate(TrainingSpec.model_validate({"model": falcon, "method": "qlora"}))
    old = estimate(TrainingSpec.model_validate({"model": falcon, "method": "qlora", "stack": {"transformers": "4.46"}}))
    assert new.params.quantized == 0 and old.params.quantized > 0
    assert new.memory.weights > old.memory.weights


def test_qlora_on_moe_keeps_fused_experts_unquantized_from_transformers_5() -> None:
    """bitsandbytes skips transformers 5's fused 3-D experts and PEFT upcasts them to fp32 (traced)."""
    mix = "mistralai/Mixtral-8x7B-v0.1"
    lora = estimate(TrainingSpec.model_validate({"model": mix, "method": "lora"})).memory.weights
    new = estimate(TrainingSpec.model_validate({"model": mix, "method": "qlora"}))
    old = estimate(TrainingSpec.model_validate({"model": mix, "method": "qlora", "stack": {"transformers": "4.46"}}))
    assert new.memory.weights > lora > old.memory.weights
    assert new.params.quantized < old.params.quantized


@settings(max_examples=40, deadline=None)
@given(model=MODELS, method=METHODS, attn=ATTN, b=st.integers(1, 8), s=st.integers(16, 8192))
def test_checkpointing_never_increases_the_peak(model: str, method: str, attn: str, b: int, s: int) -> None:
    base = {"model": model, "method": method, "attention": attn, "batch_size": b, "seq_len": s}
    on = estimate(TrainingSpec.model_validate({**base, "gradient_checkpointing": True})).memory.peak_allocated
    off = estimate(TrainingSpec.model_validate({**base, "gradient_checkpointing": False})).memory.peak_allocated
    assert on <= off


@settings(max_examples=30, deadline=None)
@given(model=MODELS, method=METHODS, n=st.integers(1, 7), sharding=st.sampled_from(["fsdp", "zero3"]))
def test_more_gpus_never_increase_per_gpu_static_memory(model: str, method: str, n: int, sharding: str) -> None:
    def static(k: int) -> int:
        spec = {"model": model, "method": method, "num_gpus": k, "sharding": sharding if k > 1 else "none"}
        ph = estimate(TrainingSpec.model_validate(spec)).memory.phases["optimizer_step"]
        return ph.weights + ph.quant_constants + ph.trainable_params + ph.gradients + ph.optimizer_states

    assert static(n + 1) <= static(n)


@settings(max_examples=40, deadline=None)
@given(
    model=MODELS,
    method=METHODS,
    gpu=st.sampled_from(["rtx-4090", "a100-sxm-40gb", "h100-sxm-80gb", "l4"]),
    b=st.integers(1, 32),
    s=st.integers(16, 16384),
)
def test_fits_agrees_with_headroom(model: str, method: str, gpu: str, b: int, s: int) -> None:
    e = estimate(
        TrainingSpec.model_validate({"model": model, "method": method, "gpu": gpu, "batch_size": b, "seq_len": s})
    )
    assert e.headroom_bytes is not None and e.gpu is not None
    assert e.fits == (e.headroom_bytes >= 0)
    assert e.headroom_bytes == e.gpu.usable_bytes - e.memory.peak_device
    assert e.memory.peak_allocated <= e.memory.peak_reserved <= e.memory.peak_device


def test_native_fsdp_keeps_the_whole_model_built_before_sharding() -> None:
    """lit-gpt / early torchtune build the model on each GPU before wrapping it; the copy stays."""
    spec = {
        "model": "meta-llama/Llama-2-7b-hf", "method": "lora", "num_gpus": 2, "sharding": "fsdp",
        "lora": {"r": 8, "targets": ["q_proj", "v_proj"], "adapter_dtype": "bf16"}, "gpu": "a100-sxm-40gb",
        "batch_size": 1, "seq_len": 1024,
    }  # fmt: skip
    e = estimate(TrainingSpec.model_validate(spec))
    full = 6_738_415_616 * 2  # bf16 base weights, unsharded
    adapters = 2 * 32 * 8 * (4096 + 4096) * 2
    # the retained unsharded copy (base weights and adapters) comes on top of this GPU's shards
    assert abs(e.memory.weights - (full // 2 + full + adapters)) <= 4
    assert e.memory.trainable_params == adapters // 2
    sharded = estimate(TrainingSpec.model_validate({**spec, "stack": {"fsdp_init": "sharded"}}))
    assert sharded.memory.weights == full // 2
    assert e.memory.peak_allocated - sharded.memory.peak_allocated == full + adapters


def test_auto_full_init_is_not_assumed_when_the_whole_model_cannot_fit_one_gpu() -> None:
    spec = {
        "model": "meta-llama/Llama-3.1-70B", "method": "lora", "num_gpus": 8, "sharding": "fsdp",
        "lora": {"adapter_dtype": "bf16"}, "gpu": "a100-sxm-80gb",
    }  # fmt: skip
    e = estimate(TrainingSpec.model_validate(spec))
    assert e.memory.weights < 70_553_706_496 * 2 / 4
    forced = estimate(TrainingSpec.model_validate({**spec, "stack": {"fsdp_init": "full"}}))
    assert forced.memory.weights > 70_553_706_496 * 2 and forced.fits is False
