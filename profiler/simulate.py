"""Trace a training step of real size without allocating it: the harness step under FakeTensorMode.

How it works
------------
1. The model of the spec is built on the ``meta`` device (``torch.device("meta")`` context around
   ``from_config``; unlike accelerate's ``init_empty_weights`` this keeps tied embeddings tied), and
   PEFT's ``get_peft_model`` is applied *on meta* (applying it inside the fake mode fails).
2. Inside a ``FakeTensorMode``, every parameter and buffer is replaced by a ``FakeTensor`` of the same
   shape, dtype and ``requires_grad`` on device ``cpu`` (a memo keeps tied parameters tied).
3. Still inside the fake mode, the optimizer is built, a fake token batch is drawn, and
   :func:`profiler.harness.training_step` runs twice; the second step runs inside the
   :class:`~profiler.tracer.LiveTensorTracer` (pushed *after* the fake mode, so it sees the same aten
   ops with fake outputs whose ``untyped_storage().nbytes()`` are the real sizes).

Fake "cpu" tensors run the CPU kernels' shape logic (CPU flash attention for SDPA, CPU autocast
rules), so a simulated step equals a real CPU step byte for byte (``tests/profiler`` checks it) and
is what a ``device: cpu`` prediction must match. Fake "cuda" devices abort in backward with the CPU
build of torch, so CUDA kernels' saved tensors cannot be simulated here.

Limits: ``qlora`` is not simulated (``Params4bit`` cannot wrap a fake tensor); step times are not
measured (``step_time_s`` is None).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from profiler.harness import (
    BuiltModel,
    Measurement,
    UnsupportedSpec,
    _is_oom,
    build_model,
    check_supported,
    empty_measurement,
    make_batch,
    make_optimizer,
    normalize_spec,
    param_counts,
    trainable_parameters,
    training_step,
)
from profiler.tracer import LiveTensorTracer


def fakeify(model: nn.Module, fake_mode: Any) -> None:
    """Replace every parameter and buffer of a meta model by a fake cpu tensor, in place.

    Shapes, dtypes and ``requires_grad`` are kept; a parameter shared by several modules (tied
    embeddings) is replaced by one shared fake parameter.
    """
    memo: dict[int, torch.Tensor] = {}
    with fake_mode:
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is None:
                    continue
                if id(p) not in memo:
                    data = torch.empty(p.shape, dtype=p.dtype, device="cpu")
                    memo[id(p)] = nn.Parameter(data, requires_grad=p.requires_grad)
                module._parameters[name] = memo[id(p)]  # type: ignore[assignment]
            for name, b in list(module._buffers.items()):
                if b is None:
                    continue
                if id(b) not in memo:
                    memo[id(b)] = torch.empty(b.shape, dtype=b.dtype, device="cpu")
                module._buffers[name] = memo[id(b)]


@contextlib.contextmanager
def real_mode_masking() -> Iterator[None]:
    """Make transformers take the mask branch a real run takes, while tensors are fake.

    transformers treats a FakeTensor as "tracing" and then keeps a packed-sequence index that it drops
    in eager mode (``find_packed_sequence_indices`` returns None when every row is one sequence); that
    mask then forces a materialised 4D causal mask and repeat_kv instead of SDPA's ``is_causal`` +
    ``enable_gqa``. The harness never packs sequences (no ``position_ids`` are passed), so under
    simulation the index is None, exactly as in the real run.
    """
    from transformers import masking_utils

    original = masking_utils.find_packed_sequence_indices

    def unpacked(position_ids: torch.Tensor) -> torch.Tensor | None:
        return None

    masking_utils.find_packed_sequence_indices = unpacked
    try:
        yield
    finally:
        masking_utils.find_packed_sequence_indices = original


def simulate_spec(spec: dict[str, Any], *, num_layers: int | None = None) -> Measurement:
    """Trace the second of two steps of ``spec`` under FakeTensorMode (backend ``cpu-fake``).

    Returns a :class:`~profiler.harness.Measurement` like :func:`profiler.harness.run_spec`, with
    ``step_time_s`` None (fake kernels do no arithmetic) and ``loss`` None.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    spec = normalize_spec(spec)
    measurement = empty_measurement(spec, "cpu-fake", num_layers)
    try:
        check_supported(spec, "cpu-fake")
        torch.set_grad_enabled(True)
        started = time.perf_counter()
        built: BuiltModel = build_model(spec, num_layers=num_layers, device="meta")
        measurement.notes.extend(built.notes)
        measurement.params = param_counts(built.model)
        fake_mode = FakeTensorMode()
        fakeify(built.model, fake_mode)
        with real_mode_masking(), fake_mode:
            optimizer, notes = make_optimizer(spec, trainable_parameters(built.model))
            measurement.notes.extend(notes)
            batch = make_batch(spec, int(built.causal_lm.config.vocab_size))
            training_step(built, optimizer, spec, batch)
            tracer = LiveTensorTracer()
            training_step(built, optimizer, spec, batch, tracer)
        measurement.trace = tracer.result()
        measurement.notes.append(f"simulated in {time.perf_counter() - started:.1f} s")
    except UnsupportedSpec as exc:
        measurement.error = f"unsupported: {exc}"
    except (RuntimeError, MemoryError, ValueError, TypeError, NotImplementedError, ImportError) as exc:
        measurement.oom = _is_oom(exc)
        measurement.error = f"{type(exc).__name__}: {exc}"
    return measurement


def simulate_estimate(spec: Any) -> dict[str, Any]:
    """``estimate memory --simulate``: the SPEC.md Estimate with its memory traced, not modelled.

    The step runs under FakeTensorMode on device cpu with the real transformers/peft code, so any
    architecture transformers can build is exact (CPU kernels). Reserved/device bytes, the fit and
    throughput are then derived as for the analytic estimate, and ``calibration.source`` says
    ``simulated``. Raises ``SpecError`` for what cannot be simulated (QLoRA, bitsandbytes
    optimizers, multi-GPU sharding).
    """
    from estimator.errors import Problem, SpecError
    from estimator.estimate import estimate_from_phases
    from estimator.models import resolve_model

    raw = spec.to_json()
    _, config = resolve_model(spec.model)
    raw["model"] = {"config": config}
    measurement = simulate_spec(raw)
    if measurement.trace is None:
        raise SpecError([Problem("--simulate", measurement.error or "the simulation did not run")])
    traced = measurement.trace.to_dict()
    phases = {name: stats["by_category"] for name, stats in traced["phases"].items()}
    note = "memory simulated: the real step traced under FakeTensorMode with CPU kernels"
    if spec.device.value == "cuda":
        note += " (CUDA kernels differ slightly: e.g. 1-byte dropout masks)"
    return estimate_from_phases(spec, phases, "simulated", note).model_dump(mode="json")
