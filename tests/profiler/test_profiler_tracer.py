"""The live-tensor tracer: storage counting, categories, and exact closed forms on a tiny Llama."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from _profiler_tiny import LLAMA, QWEN3, n_params, spec  # noqa: E402

from profiler.harness import run_spec  # noqa: E402
from profiler.tracer import CATEGORIES, PHASES, LiveTensorTracer  # noqa: E402

# rotary inv_freq and original_inv_freq buffers: head_dim / 2 fp32 values each
ROPE_BUFFERS = 2 * 4 * (LLAMA["hidden_size"] // LLAMA["num_attention_heads"] // 2)


def test_tracer_counts_a_storage_once_across_views_and_frees_it_when_the_last_view_dies() -> None:
    tracer = LiveTensorTracer()
    with tracer:
        tracer.set_phase("forward")
        a = torch.empty(1000, dtype=torch.float32)
        b = a.view(10, 100)
        c = b[3:]
        assert tracer.live_bytes == 4000
        del a, b
        assert tracer.live_bytes == 4000
        del c
        assert tracer.live_bytes == 0
        d = torch.ones(10, dtype=torch.bfloat16)
        tracer.end()
    result = tracer.result()
    assert result.phases["forward"].peak == 4000
    assert tracer.live_bytes == 20
    del d


def test_tracer_calls_saved_tensors_activations_and_temporaries_transient() -> None:
    x = torch.ones(256, requires_grad=True)  # 1 KiB, registered as a trainable param
    tracer = LiveTensorTracer()
    tracer.track(x, "trainable_params")
    with tracer:
        tracer.set_phase("forward")
        y = (x * 2).exp()  # x*2 dies right after exp (exp saves its output): transient; y: activation
        loss = y.sum()
        tracer.set_phase("loss_backward")
        loss.backward()
        tracer.end()
    forward = tracer.result().phases["forward"]
    assert forward.by_category["trainable_params"] == 1024
    # the peak is at exp(): x*2 (transient, dies right after) and exp's output (saved: activation)
    assert forward.peak == 3 * 1024
    assert forward.by_category["activations"] == 1024
    assert forward.by_category["transient"] == 1024
    assert x.grad is not None


@pytest.mark.parametrize(("dtype", "width"), [("fp32", 4), ("bf16", 2)])
def test_tracer_counts_params_grads_and_adamw_states_exactly(dtype: str, width: int) -> None:
    m = run_spec(spec(method="full", param_dtype=dtype, gradient_checkpointing=False), timed_steps=0)
    assert m.error is None, m.error
    n = n_params(LLAMA)
    assert m.params == {"total": n, "trainable": n}
    n_tensors = 2 * 9 + 3  # per layer: q,k,v,o,gate,up,down + 2 norms; embed, final norm, lm_head
    trace = m.trace
    assert trace is not None
    assert trace.start_by_category["trainable_params"] == width * n
    # torch AdamW: exp_avg + exp_avg_sq in the param dtype, plus one fp32 `step` scalar per tensor
    assert trace.start_by_category["optimizer_states"] == 2 * width * n + 4 * n_tensors
    assert trace.start_by_category["gradients"] == 0  # zero_grad(set_to_none=True) freed them
    opt = trace.phases["optimizer_step"]
    assert opt.by_category["gradients"] == width * n
    # foreach AdamW temporaries at the peak: one param-sized copy (MEMORY_MODEL.md "Transients")
    assert opt.by_category["transient"] == width * n


def test_tracer_counts_lora_adapters_and_their_states_exactly() -> None:
    r = 8
    m = run_spec(spec(method="lora", lora={"r": r}, gradient_checkpointing=False), timed_steps=0)
    assert m.error is None, m.error
    h, i, d = LLAMA["hidden_size"], LLAMA["intermediate_size"], LLAMA["hidden_size"] // 4
    kv = LLAMA["num_key_value_heads"] * d
    per_layer = r * ((h + h) + 2 * (h + kv) + (h + h) + 2 * (h + i) + (i + h))
    n_lora = LLAMA["num_hidden_layers"] * per_layer
    assert m.params["trainable"] == n_lora
    trace = m.trace
    assert trace is not None
    assert trace.start_by_category["trainable_params"] == 4 * n_lora  # PEFT default: fp32 adapters
    assert trace.start_by_category["optimizer_states"] == 8 * n_lora + 4 * 2 * 7 * LLAMA["num_hidden_layers"]
    assert trace.start_by_category["weights"] == 2 * n_params(LLAMA) + ROPE_BUFFERS


def test_tracer_counts_nf4_double_quant_constants_exactly() -> None:
    pytest.importorskip("bitsandbytes")
    m = run_spec(spec(method="qlora", gradient_checkpointing=False), timed_steps=0)
    assert m.error is None, m.error
    h, i, d = LLAMA["hidden_size"], LLAMA["intermediate_size"], LLAMA["hidden_size"] // 4
    kv = LLAMA["num_key_value_heads"] * d
    linears = [h * h, h * kv, h * kv, h * h, h * i, h * i, i * h]

    def nf4_bytes(n: int) -> int:
        # packed 4-bit + uint8 absmax per 64 + nf4 code (16 fp32) + offset (fp32)
        # + nested fp32 absmax per 256 blocks + nested code (256 fp32)  (PROFILING_NOTES.md)
        return n // 2 + n // 64 + 64 + 4 + 4 * -(-(n // 64) // 256) + 1024

    quantized = sum(linears) * LLAMA["num_hidden_layers"]
    unquantized = n_params(LLAMA) - quantized  # cast to fp32 by prepare_model_for_kbit_training
    expected = LLAMA["num_hidden_layers"] * sum(nf4_bytes(n) for n in linears) + 4 * unquantized + ROPE_BUFFERS
    assert m.trace is not None
    assert m.trace.start_by_category["weights"] == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"method": "full", "gradient_checkpointing": True, "attention": "eager"},
        {"method": "lora", "loss": "chunked"},
    ],
)
def test_every_phase_peak_is_the_sum_of_its_categories(fields: dict[str, object]) -> None:
    m = run_spec(spec(QWEN3, **fields), timed_steps=0)
    assert m.error is None, m.error
    assert m.trace is not None
    assert set(m.trace.phases) == set(PHASES)
    for stats in m.trace.phases.values():
        assert set(stats.by_category) == set(CATEGORIES)
        assert sum(stats.by_category.values()) == stats.peak
        assert 0 <= stats.activations_head <= stats.by_category["activations"]
    assert m.trace.peak_allocated == max(s.peak for s in m.trace.phases.values())
    assert m.trace.end_bytes == m.trace.start_bytes  # steady state: nothing leaks from a step


def test_gradient_checkpointing_keeps_fewer_forward_activations_and_recomputes_in_backward() -> None:
    off = run_spec(spec(method="full", gradient_checkpointing=False, seq_len=128), timed_steps=0).trace
    on = run_spec(spec(method="full", gradient_checkpointing=True, seq_len=128), timed_steps=0).trace
    assert off is not None and on is not None
    body_off = off.phases["forward"].by_category["activations"] - off.phases["forward"].activations_head
    body_on = on.phases["forward"].by_category["activations"] - on.phases["forward"].activations_head
    assert body_on < body_off / 2
    # the recomputed layer's saved tensors count as activations during layer_backward
    assert on.phases["layer_backward"].by_category["activations"] > body_on


def test_standard_loss_keeps_fp32_log_probs_as_head_activations() -> None:
    m = run_spec(spec(method="lora", gradient_checkpointing=True), timed_steps=0)
    assert m.trace is not None
    tokens, vocab = 2 * 32, LLAMA["vocab_size"]
    head = m.trace.phases["forward"].activations_head
    # log_softmax output (fp32, tokens x V) is saved for backward, plus a few small tensors
    assert 4 * tokens * vocab <= head < 4 * tokens * vocab + 4096


def test_tracer_sees_the_dequantized_weight_inside_bitsandbytes_gemm_4bit() -> None:
    bnb = pytest.importorskip("bitsandbytes")
    weight = torch.randn(256, 128, dtype=torch.bfloat16)
    packed, state = bnb.functional.quantize_4bit(weight, quant_type="nf4", compress_statistics=False)
    a = torch.randn(8, 128, dtype=torch.bfloat16)
    tracer = LiveTensorTracer()
    with tracer:
        tracer.set_phase("forward")
        out = torch.ops.bitsandbytes.gemm_4bit.default(
            a, packed, state.shape, state.absmax, state.blocksize, state.quant_type
        )
        tracer.end()
    assert out.shape == (8, 256)
    # output (8 x 256 bf16) plus the whole weight dequantized to bf16 while the matmul runs
    assert tracer.result().phases["forward"].peak >= 8 * 256 * 2 + 256 * 128 * 2
