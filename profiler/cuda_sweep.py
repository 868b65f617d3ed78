"""GPU calibration sweeps: plan runs to fit a time budget, run them on CUDA, write one record per run.

Planning (:func:`plan_sweep`, pure, no torch): a sweep is a list of *series* in priority order
(QLoRA first, then LoRA, then full fine-tuning), each one model and method with checkpointing on or
off, over growing shapes. A series keeps shapes while the estimator predicts they fit, then takes
exactly one predicted not to fit ("past OOM"), so every series brackets the memory limit. Each run
gets a predicted cost (model build once per group + warm-up, probed and timed steps at a
conservative efficiency); runs are admitted breadth-first (the first shape of every series, then
the rest series by series) while the total stays inside the budget.

Running (:func:`run_plan`): for each planned run, the runner builds (or reuses) the model, runs a
warm-up step (optimizer states, lazily loaded kernels), one step under the probes
(:mod:`profiler.probes`, :mod:`profiler.nvml`) with a marker at every phase boundary, then timed
steps. ``torch.cuda.OutOfMemoryError`` is a data point: the record says ``oom: true``, memory is
freed (gc + ``empty_cache``) and the sweep goes on (bigger shapes of that series are skipped). The
wall clock is checked before each run against the budget, so a wrong cost model cannot overrun it.

Records (schema 1, :mod:`profiler.record`) go to ``<out>/<gpu-slug>/<id>.json``, written atomically;
each carries the environment fingerprint (GPU name, memory, driver, CUDA, torch, transformers, peft,
bitsandbytes), the spec, the measured peaks per phase (allocator and NVML), step time, tokens/s and
the estimator's prediction at run time.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from profiler import PHASES
from profiler.probes import ProbeSet, TorchAllocatorProbe, cuda_available

SWEEPS = ("quick", "standard")
SCHEMA = 1

# Cost model (seconds). Deliberately pessimistic: the runner also checks the clock before each run.
STEP_SAFETY = 2.5  # predicted step time x this (small models run far below the default MFU)
MIN_STEP_S = 0.25  # kernel-launch floor of one step of a ~1B model with Python overhead
RUN_OVERHEAD_S = 3.0  # optimizer, batch, synchronize, free, write
WARMUP_STEPS = 1
TIMED_STEPS = 2
ASSUMED_PEAK_FLOPS = 300e12  # when the GPU is not in the catalog


# ----------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Series:
    """One model and method with fixed settings, over growing (batch, seq) shapes."""

    model: str  # catalog id
    method: str
    gradient_checkpointing: bool
    shapes: tuple[tuple[int, int], ...]
    extra: tuple[tuple[str, Any], ...] = ()
    tag: str = ""

    @property
    def name(self) -> str:
        short = self.model.split("/")[-1]
        parts = [short, self.method, "gc" if self.gradient_checkpointing else "nogc"]
        parts += [f"{k}={v}" for k, v in self.extra if not isinstance(v, dict)]
        return "-".join(parts) + (f"-{self.tag}" if self.tag else "")

    @property
    def group(self) -> str:
        """Runs of one group share a built model (checkpointing and optimizer change per run)."""
        extra = {k: v for k, v in self.extra if k not in ("optimizer", "loss")}
        return json.dumps([self.model, self.method, extra], sort_keys=True, default=str)


@dataclass
class PlannedRun:
    name: str
    series: str
    group: str
    spec: dict[str, Any]
    tokens: int
    predicted_peak_device: int
    predicted_fits: bool
    predicted_step_s: float
    cost_s: float
    past_oom: bool = False
    build_cost_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "series": self.series,
            "tokens": self.tokens,
            "predicted_peak_device": self.predicted_peak_device,
            "predicted_fits": self.predicted_fits,
            "predicted_step_s": round(self.predicted_step_s, 4),
            "cost_s": round(self.cost_s, 2),
            "build_cost_s": round(self.build_cost_s, 2),
            "past_oom": self.past_oom,
        }


@dataclass
class Plan:
    sweep: str
    gpu_id: str | None
    budget_s: float
    runs: list[PlannedRun]
    dropped: list[PlannedRun] = field(default_factory=list)

    @property
    def predicted_s(self) -> float:
        return sum(r.cost_s + r.build_cost_s for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep,
            "gpu_id": self.gpu_id,
            "budget_s": self.budget_s,
            "predicted_s": round(self.predicted_s, 1),
            "runs": [r.to_dict() for r in self.runs],
            "dropped": [r.name for r in self.dropped],
        }


_GROW = ((1, 512), (1, 2048), (1, 8192), (2, 8192), (4, 8192), (8, 8192), (16, 8192), (32, 8192), (64, 8192))
_GROW_BIG = ((1, 1024), (1, 4096), (2, 8192), (4, 8192), (8, 8192), (16, 8192))


def sweep_series(name: str) -> list[Series]:
    """The series of a named sweep, in priority order (QLoRA, then LoRA, then full)."""
    small = "meta-llama/Llama-3.2-1B"
    quick = [Series(small, method, use_gc, _GROW) for method in ("qlora", "lora", "full") for use_gc in (True, False)]
    if name == "quick":
        return quick
    if name != "standard":
        raise ValueError(f"unknown cuda sweep {name!r}; known: {', '.join(SWEEPS)}")
    other = "Qwen/Qwen2.5-0.5B"  # another family: tied 151k vocabulary, QKV biases
    big = "meta-llama/Llama-3.1-8B"
    out: list[Series] = []
    for method in ("qlora", "lora", "full"):
        out += [s for s in quick if s.method == method]
        out += [Series(other, method, use_gc, _GROW) for use_gc in (True, False)]
        if method != "full":
            out.append(Series(big, method, True, _GROW_BIG))
    out += [
        Series(big, "qlora", True, ((1, 2048), (1, 8192)), (("optimizer", "paged_adamw_8bit"),), "paged"),
        Series(small, "lora", True, ((1, 2048), (1, 8192), (4, 8192)), (("loss", "chunked"),), "chunked"),
        Series(small, "lora", False, ((1, 1024), (1, 4096)), (("attention", "eager"),), "eager"),
        Series(small, "full", True, ((1, 2048), (1, 8192)), (("optimizer", "adamw_8bit"),), "adam8"),
    ]
    return out


def _catalog_spec(series: Series, batch: int, seq: int, gpu_id: str | None) -> dict[str, Any]:
    from estimator.models import find_model

    model = find_model(series.model)
    if model is None:
        raise ValueError(f"{series.model} is not in the model catalog")
    config = dict(model.config)
    config["max_position_embeddings"] = max(int(config.get("max_position_embeddings", 0)), seq)
    spec: dict[str, Any] = {
        "model": {"name": model.id, "config": config},
        "method": series.method,
        "gradient_checkpointing": series.gradient_checkpointing,
        "batch_size": batch,
        "seq_len": seq,
        "device": "cuda",
        **dict(series.extra),
    }
    if gpu_id is not None:
        spec["gpu"] = gpu_id
    return spec


def predict(spec: dict[str, Any]) -> dict[str, Any] | None:
    """``estimate(spec)`` as JSON, or None when the estimator rejects the spec."""
    from estimator.errors import SpecError
    from estimator.estimate import estimate
    from estimator.spec import check_spec

    try:
        return estimate(check_spec(spec)).model_dump(mode="json")
    except SpecError:
        return None


def build_cost_s(method: str, params: int) -> float:
    """Seconds to build a random model of ``params`` on the GPU (QLoRA: save + 4-bit reload)."""
    billions = params / 1e9
    if method == "qlora":
        return 12.0 + 14.0 * billions
    return 6.0 + 2.0 * billions


def run_cost_s(predicted_step_s: float, fits: bool) -> float:
    step = max(predicted_step_s * STEP_SAFETY, MIN_STEP_S)
    if not fits:  # fails inside the first step
        return RUN_OVERHEAD_S + step
    return RUN_OVERHEAD_S + (WARMUP_STEPS + 1 + TIMED_STEPS) * step


def _plan_series(series: Series, gpu_id: str | None, usable_bytes: int | None) -> list[PlannedRun]:
    runs: list[PlannedRun] = []
    for batch, seq in series.shapes:
        spec = _catalog_spec(series, batch, seq, gpu_id)
        pred = predict(spec)
        if pred is None:
            continue
        device_peak = int(pred["memory"]["peak_device"])
        # what this device offers (torch total_memory) when known, else the catalog's verdict
        fits = device_peak <= usable_bytes if usable_bytes is not None else pred.get("fits") is not False
        fpt = float(pred["throughput"]["flops_per_token"])
        tps = float(pred["throughput"]["tokens_per_second"])
        if tps <= 0:
            tps = ASSUMED_PEAK_FLOPS * float(pred["throughput"]["mfu"]) / fpt
        step_s = batch * seq / tps
        runs.append(
            PlannedRun(
                name=f"{series.name}-{batch}x{seq}",
                series=series.name,
                group=series.group,
                spec=spec,
                tokens=batch * seq,
                predicted_peak_device=device_peak,
                predicted_fits=fits,
                predicted_step_s=step_s,
                cost_s=run_cost_s(step_s, fits),
                past_oom=not fits,
            )
        )
        if not fits:
            break
    return runs


def plan_sweep(
    name: str,
    budget_s: float,
    *,
    gpu_id: str | None,
    usable_bytes: int | None = None,
    startup_s: float = 0.0,
) -> Plan:
    """The runs of sweep ``name`` that fit ``budget_s`` seconds (module docstring), in run order."""
    from estimator.estimate import memory_model
    from estimator.spec import check_spec

    candidates = [_plan_series(s, gpu_id, usable_bytes) for s in sweep_series(name)]
    build_costs: dict[str, float] = {}
    for runs in candidates:
        if runs and runs[0].group not in build_costs:
            params = memory_model(check_spec(runs[0].spec)).static.total_count
            build_costs[runs[0].group] = build_cost_s(runs[0].spec["method"], params)

    admitted: set[int] = set()
    built: set[str] = set()
    spent = startup_s
    order = [(si, 0) for si in range(len(candidates))]  # breadth first: the first shape of each series
    order += [(si, ri) for si, runs in enumerate(candidates) for ri in range(1, len(runs))]
    flat: dict[int, PlannedRun] = {}
    blocked: set[int] = set()  # a series whose next shape did not fit the budget stops there
    for si, ri in order:
        runs = candidates[si]
        if ri >= len(runs) or si in blocked:
            continue
        run = runs[ri]
        extra = 0.0 if run.group in built else build_costs[run.group]
        if spent + run.cost_s + extra > budget_s:
            blocked.add(si)
            continue
        spent += run.cost_s + extra
        if run.group not in built:
            built.add(run.group)
            run.build_cost_s = extra
        key = id(run)
        admitted.add(key)
        flat[key] = run

    # Run order: groups in priority order of their first series, then series, then growing tokens.
    group_rank: dict[str, int] = {}
    series_rank: dict[str, int] = {}
    for si, runs in enumerate(candidates):
        for r in runs:
            group_rank.setdefault(r.group, si)
            series_rank.setdefault(r.series, si)
    chosen = sorted(flat.values(), key=lambda r: (group_rank[r.group], series_rank[r.series], r.tokens))
    # the build cost belongs to the first run of its group in run order
    costs = {g: build_costs[g] for g in built}
    for r in chosen:
        r.build_cost_s = costs.pop(r.group, 0.0)
    dropped = [r for runs in candidates for r in runs if id(r) not in admitted]
    return Plan(sweep=name, gpu_id=gpu_id, budget_s=budget_s, runs=chosen, dropped=dropped)


# ----------------------------------------------------------------------------- records
def environment_fingerprint(gpu: dict[str, Any]) -> dict[str, Any]:
    """profiler.record's software fingerprint + the GPU (name, memory, driver, CUDA) + allocator config."""
    from profiler.record import environment

    env = environment()
    env["gpu"] = dict(gpu)
    env["cuda"] = gpu.get("cuda")
    env["driver"] = gpu.get("driver")
    env["pytorch_cuda_alloc_conf"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF")
    return env


def stack_key(env: dict[str, Any]) -> str:
    """The library versions that change measured memory, as one string."""
    keys = ("torch", "transformers", "peft", "bitsandbytes", "cuda")
    return ",".join(f"{k}={env.get(k)}" for k in keys)


def cuda_record_id(spec: dict[str, Any], env: dict[str, Any]) -> str:
    """Stable per (spec, GPU, stack): the same run on another stack gets another file."""
    text = json.dumps(
        {"spec": spec, "backend": "cuda", "gpu": (env.get("gpu") or {}).get("name"), "stack": stack_key(env)},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return f"cuda-{spec.get('method', 'x')}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def build_record(
    spec: dict[str, Any],
    env: dict[str, Any],
    measured: dict[str, Any] | None,
    *,
    oom: bool = False,
    error: str | None = None,
    notes: Iterable[str] = (),
    prediction: dict[str, Any] | None = None,
    sweep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A schema-1 calibration record for a CUDA run (the same top-level keys as profiler.record)."""
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "id": cuda_record_id(spec, env),
        "backend": "cuda",
        "spec": spec,
        "environment": env,
        "measured": measured,
        "oom": bool(oom),
        "error": error,
        "notes": list(notes),
        "prediction": prediction,
    }
    if sweep is not None:
        record["sweep"] = sweep
    return record


def measured_block(
    probes: dict[str, dict[str, Any]],
    *,
    step_time_s: float | None,
    tokens: int,
    loss: float | None = None,
    params: dict[str, int] | None = None,
    idle: dict[str, Any] | None = None,
    by_category: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """The record's ``measured`` block from probe results.

    ``peak_allocated`` / ``peak_reserved`` / ``peak_active``: torch allocator; ``peak_device``: NVML's
    process peak (or the device peak minus the device's use before the step, where NVML does not
    report processes); per phase: ``peak`` (allocated) plus reserved, active and NVML peaks.
    """
    alloc = probes.get("allocator") or {}
    nv = probes.get("nvml") or {}
    phases: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        a = (alloc.get("phases") or {}).get(phase)
        n = (nv.get("phases") or {}).get(phase)
        if a is None and n is None:
            continue
        entry: dict[str, Any] = {"peak": (a or {}).get("allocated_peak"), "by_category": {}}
        entry.update({k: v for k, v in (a or {}).items() if k != "allocated_peak"})
        entry.update({f"nvml_{k}": v for k, v in (n or {}).items()})
        if by_category and phase in by_category:
            entry["by_category"] = dict(by_category[phase])
        phases[phase] = entry
    device_peak = nv.get("process_peak")
    device_source = "nvml_process"
    if device_peak is None and nv.get("device_peak") is not None:
        base = (idle or {}).get("nvml_device_used_before_init")
        device_peak = nv["device_peak"] - base if base is not None else None
        device_source = "nvml_device_minus_baseline"
    return {
        "peak_allocated": alloc.get("peak_allocated"),
        "peak_phase": alloc.get("peak_phase"),
        "peak_reserved": alloc.get("peak_reserved"),
        "peak_active": alloc.get("peak_active"),
        "reserved_at_allocated_peak": alloc.get("reserved_at_allocated_peak"),
        "num_alloc_retries": alloc.get("num_alloc_retries"),
        "peak_device": device_peak,
        "peak_device_source": device_source if device_peak is not None else None,
        "phases": phases,
        "nvml": {k: v for k, v in nv.items() if k != "phases"},
        "idle": dict(idle or {}),
        "step_time_s": step_time_s,
        "tokens_per_second": tokens / step_time_s if step_time_s else None,
        "loss": loss,
        "params": dict(params or {}),
    }


# ----------------------------------------------------------------------------- running
class StepRunner(Protocol):
    """What :func:`run_plan` needs: run one planned spec, free memory after a failure."""

    def environment(self) -> dict[str, Any]: ...
    def run(self, planned: PlannedRun) -> tuple[dict[str, Any], list[str]]: ...
    def free(self) -> None: ...


def is_oom(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, or an error whose message says the device ran out of memory."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return "out of memory" in text and ("cuda" in text or "cublas" in text or "hip" in text)


@dataclass
class SweepResult:
    records: list[dict[str, Any]]
    paths: list[Path]
    skipped: list[tuple[str, str]]
    elapsed_s: float


def run_plan(
    plan: Plan,
    runner: StepRunner,
    out_dir: str | Path,
    *,
    clock: Callable[[], float] = time.monotonic,
    started_at: float | None = None,
    progress: Callable[[str], None] | None = None,
    env: dict[str, Any] | None = None,
) -> SweepResult:
    """Run every planned run inside the budget; OOMs are records, not failures (module docstring).

    ``env`` is the environment fingerprint when the caller already measured it."""
    from profiler.record import write_record

    start = clock() if started_at is None else started_at
    if env is None:
        env = runner.environment()
    records: list[dict[str, Any]] = []
    paths: list[Path] = []
    skipped: list[tuple[str, str]] = []
    oom_series: dict[str, int] = {}
    failed_groups: set[str] = set()
    for run in plan.runs:
        elapsed = clock() - start
        if run.series in oom_series and run.tokens >= oom_series[run.series]:
            skipped.append((run.name, "a smaller shape of this series ran out of memory"))
            continue
        if run.group in failed_groups:
            skipped.append((run.name, "the model of this group could not be built"))
            continue
        if elapsed + run.cost_s + run.build_cost_s > plan.budget_s:
            skipped.append((run.name, f"time budget: {elapsed:.0f}s spent of {plan.budget_s:.0f}s"))
            continue
        t0 = clock()
        measured: dict[str, Any] | None = None
        notes: list[str] = []
        oom = False
        error: str | None = None
        try:
            measured, notes = runner.run(run)
        except Exception as exc:  # one failed run must not end the sweep
            oom = is_oom(exc)
            error = f"{type(exc).__name__}: {str(exc)[:500]}"
            if not oom and "build" in str(exc).lower():
                failed_groups.add(run.group)
            del exc  # drop the traceback (and the tensors its frames hold) before freeing
        if oom or error is not None:
            runner.free()
        if oom:
            oom_series[run.series] = min(run.tokens, oom_series.get(run.series, run.tokens))
        prediction = predict(run.spec)
        record = build_record(
            run.spec,
            env,
            measured,
            oom=oom,
            error=error,
            notes=notes,
            prediction=prediction,
            sweep={
                "name": plan.sweep,
                "entry": run.name,
                "series": run.series,
                "predicted_fits": run.predicted_fits,
                "past_oom": run.past_oom,
            },
        )
        slug = env.get("gpu", {}).get("slug") or plan.gpu_id or "unknown-gpu"
        paths.append(write_record(record, Path(out_dir) / slug))
        records.append(record)
        if progress is not None:
            status = "OOM" if oom else ("error: " + error[:60] if error else "ok")
            progress(f"{run.name:48s} {clock() - t0:6.1f}s {status}")
    return SweepResult(records, paths, skipped, clock() - start)


def free_cuda_memory() -> None:
    """gc + empty_cache + reset peak statistics (no-op without CUDA)."""
    gc.collect()
    if cuda_available():
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


@dataclass
class _Group:
    key: str
    built: Any
    input_grads: bool = False


class CudaStepRunner:
    """Builds models on a torch device and runs probed steps (a thin CUDA version of the harness).

    It reuses :mod:`profiler.harness` for the loss (``compute_loss``), the phase boundary
    (``final_norm``), optimizers and batches, so a CUDA record measures the same step as a CPU one.
    The harness's own step takes only its live-tensor tracer, so the probed step is written here
    with the same four phases. ``device="cpu"`` runs the same code on CPU (tests; probes read nothing).
    """

    def __init__(
        self,
        device: str = "cuda",
        *,
        timed_steps: int = TIMED_STEPS,
        tmp_dir: str | None = None,
        nvml: Any = None,
        device_used_before_init: int | None = None,
    ) -> None:
        self.device = device
        self.timed_steps = timed_steps
        self.tmp_dir = tmp_dir
        self._group: _Group | None = None
        self._idle: dict[str, Any] = {}
        self._gpu: dict[str, Any] = {}
        self._nvml = nvml
        self._before = device_used_before_init
        self._optimizer: Any = None
        self._batch: Any = None

    # -- environment ------------------------------------------------------------------------
    def environment(self) -> dict[str, Any]:
        import torch

        from profiler.nvml import Nvml, gpu_id_from_device, gpu_slug, measure_idle_context

        gpu: dict[str, Any] = {"cuda": torch.version.cuda}
        if self.device.startswith("cuda") and cuda_available():
            if self._nvml is None:
                self._nvml = Nvml()
                if self._before is None:
                    self._before = self._nvml.device_used()
            self._idle = measure_idle_context(self._nvml, self._before)
            props = torch.cuda.get_device_properties(torch.cuda.current_device())
            info = self._nvml.info()
            name = info.get("name") or props.name
            memory = info.get("memory_bytes") or int(props.total_memory)
            gpu.update(info)
            gpu.update(
                {
                    "name": name,
                    "memory_bytes": memory,
                    "torch_total_memory": int(props.total_memory),
                    "capability": f"{props.major}.{props.minor}",
                    "id": gpu_id_from_device(name, memory),
                    "slug": gpu_slug(name, memory),
                }
            )
        else:
            gpu.update({"name": "cpu", "id": None, "slug": "cpu-runner"})
        self._gpu = gpu
        return environment_fingerprint(gpu)

    # -- models -----------------------------------------------------------------------------
    def _build(self, spec: dict[str, Any]) -> Any:
        import torch
        from peft import get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM

        from profiler import harness

        harness._quiet_transformers()
        dtype = harness._DTYPES[spec["param_dtype"]]
        config = harness.hf_config(spec)
        method = spec["method"]
        notes: list[str] = []
        with torch.device(self.device):
            base = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=spec["attention"])
        if method == "qlora":
            bnb = harness.bnb_quantization_config(spec)
            device_map: dict[str, Any] = {"": torch.device(self.device)}
            with tempfile.TemporaryDirectory(prefix="tunecast-cuda-qlora-", dir=self.tmp_dir) as tmp:
                base.save_pretrained(tmp)
                del base
                free_cuda_memory()
                base = AutoModelForCausalLM.from_pretrained(
                    tmp,
                    quantization_config=bnb,
                    dtype=dtype,
                    device_map=device_map,
                    attn_implementation=spec["attention"],
                )
            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
            notes.append("prepare_model_for_kbit_training cast non-quantized params to fp32")
        base.config.use_cache = False
        model = base
        if method in ("lora", "qlora"):
            from peft import LoraConfig

            for p in base.parameters():
                p.requires_grad_(False)
            lora = spec["lora"]
            config_lora = LoraConfig(
                r=int(lora["r"]),
                lora_alpha=float(lora["alpha"]),
                lora_dropout=float(lora["dropout"]),
                target_modules=lora["targets"],
                modules_to_save=list(lora["modules_to_save"]) or None,
                task_type="CAUSAL_LM",
            )
            adapter_dtype = harness._DTYPES[lora["adapter_dtype"]]
            model = get_peft_model(base, config_lora, autocast_adapter_dtype=adapter_dtype == torch.float32)
            harness._cast_adapters(model, adapter_dtype)
        model.train()
        return harness.BuiltModel(model=model, causal_lm=base, notes=notes)

    def _model_for(self, run: PlannedRun, spec: dict[str, Any]) -> _Group:
        if self._group is not None and self._group.key == run.group:
            return self._group
        self._group = None
        free_cuda_memory()
        try:
            built = self._build(spec)
        except Exception as exc:
            if is_oom(exc):
                raise
            raise RuntimeError(f"model build failed: {type(exc).__name__}: {exc}") from exc
        self._group = _Group(run.group, built)
        return self._group

    def _set_checkpointing(self, group: _Group, spec: dict[str, Any]) -> None:
        base = group.built.causal_lm
        on = bool(spec["gradient_checkpointing"])
        if on:
            enable = getattr(base, "activation_checkpointing_enable", None)
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            disable = getattr(base, "activation_checkpointing_disable", None) or base.gradient_checkpointing_disable
            disable()
        # prepare_model_for_kbit_training(use_gradient_checkpointing=True) makes embedding outputs
        # require grad; mirror it for QLoRA with checkpointing, as profiler.harness does.
        want = on and spec["method"] == "qlora"
        if want and not group.input_grads:
            base.enable_input_require_grads()
        elif not want and group.input_grads:
            base.disable_input_require_grads()
        group.input_grads = want

    # -- the step ---------------------------------------------------------------------------
    def probed_step(
        self, built: Any, optimizer: Any, spec: dict[str, Any], batch: Any, mark: Callable[[str], None] | None
    ) -> float:
        """One step (forward+loss, backward, optimizer step, zero_grad) with a ``mark`` per phase."""
        from profiler import harness

        state = {"phase": ""}

        def set_phase(phase: str) -> None:
            state["phase"] = phase
            if mark is not None:
                mark(phase)

        handles: list[Any] = []
        if mark is not None:

            def to_layer_backward(grad: Any) -> None:
                if state["phase"] == "loss_backward":
                    set_phase("layer_backward")

            def on_norm_output(module: Any, inputs: Any, output: Any) -> None:
                out = output[0] if isinstance(output, tuple) else output
                if getattr(out, "requires_grad", False):
                    out.register_hook(to_layer_backward)

            handles.append(harness.final_norm(built.causal_lm).register_forward_hook(on_norm_output))
        try:
            input_ids, labels = batch
            set_phase("forward")
            loss = harness.compute_loss(built, spec, input_ids, labels)
            set_phase("loss_backward")
            loss.backward()
            if state["phase"] == "loss_backward":
                set_phase("layer_backward")
            value = float(loss.detach())
            del loss
            set_phase("optimizer_step")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        finally:
            for h in handles:
                h.remove()
        return value

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def run(self, planned: PlannedRun) -> tuple[dict[str, Any], list[str]]:
        from profiler import harness
        from profiler.nvml import NvmlProbe

        spec = harness.normalize_spec(planned.spec)
        harness.seed_everything(0)
        group = self._model_for(planned, spec)
        built = group.built
        self._set_checkpointing(group, spec)
        notes = list(built.notes)
        params = harness.trainable_parameters(built.model)
        self._optimizer, opt_notes = harness.make_optimizer(spec, params)
        notes += opt_notes
        self._batch = harness.make_batch(spec, int(built.causal_lm.config.vocab_size), device=self.device)
        tokens = int(spec["batch_size"]) * int(spec["seq_len"])
        for _ in range(WARMUP_STEPS):
            self.probed_step(built, self._optimizer, spec, self._batch, None)
        self._sync()
        gc.collect()
        probe_list: list[Any] = [TorchAllocatorProbe()]
        if self._nvml is not None and getattr(self._nvml, "ok", False):
            probe_list.append(NvmlProbe(nvml=self._nvml))
        probes = ProbeSet(probe_list)
        probes.begin_step()
        loss = self.probed_step(built, self._optimizer, spec, self._batch, probes.mark)
        self._sync()
        results = probes.end_step()
        times: list[float] = []
        for _ in range(self.timed_steps):
            self._sync()
            t0 = time.perf_counter()
            self.probed_step(built, self._optimizer, spec, self._batch, None)
            self._sync()
            times.append(time.perf_counter() - t0)
        step_time = statistics.median(times) if times else None
        measured = measured_block(
            results,
            step_time_s=step_time,
            tokens=tokens,
            loss=loss,
            params=harness.param_counts(built.model),
            idle=self._idle,
        )
        self._release_run()
        return measured, notes

    def _release_run(self) -> None:
        self._optimizer = None
        self._batch = None
        free_cuda_memory()

    def free(self) -> None:
        """After a failure: drop the optimizer, batch and gradients, collect, empty the cache."""
        if self._group is not None:
            with contextlib.suppress(Exception):
                self._group.built.model.zero_grad(set_to_none=True)
        self._release_run()


def run_cuda_sweep(
    name: str,
    out_root: str | Path,
    *,
    gpu_minutes: float,
    progress: Callable[[str], None] | None = None,
    runner: StepRunner | None = None,
) -> tuple[Plan, SweepResult]:
    """Plan sweep ``name`` for the GPU in use within ``gpu_minutes`` and run it; records under
    ``out_root/<gpu-slug>/``. Raises RuntimeError without CUDA (unless a runner is given)."""
    started = time.monotonic()
    if runner is None:
        if not cuda_available():
            raise RuntimeError("no CUDA device: torch.cuda.is_available() is False")
        from profiler.nvml import Nvml

        nvml = Nvml()
        before = nvml.device_used()  # before this process creates a CUDA context
        runner = CudaStepRunner("cuda", nvml=nvml, device_used_before_init=before)
    env = runner.environment()
    gpu = env.get("gpu") or {}
    usable = gpu.get("torch_total_memory")
    plan = plan_sweep(
        name,
        gpu_minutes * 60.0,
        gpu_id=gpu.get("id"),
        usable_bytes=usable,
        startup_s=time.monotonic() - started,
    )
    if progress is not None:
        progress(f"plan: {len(plan.runs)} runs, predicted {plan.predicted_s:.0f}s of {plan.budget_s:.0f}s")
    result = run_plan(plan, runner, out_root, started_at=started, progress=progress, env=env)
    return plan, result
