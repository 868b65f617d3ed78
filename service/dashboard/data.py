"""What the dashboard and ``estimate report`` show, computed through the estimator.

Each function turns dashboard inputs into estimator calls and hands the ``Estimate`` objects to the
figure builders unchanged. Memory, fit and throughput numbers all come from ``estimator.estimate``;
the OOM boundaries come from its ``largest_fit``; time and cost per run from ``estimator.plan``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from estimator.errors import Problem, SpecError
from estimator.estimate import Estimate, estimate
from estimator.models import find_model
from estimator.plan import PlanRequest, plan
from estimator.spec import Method, TrainingSpec, check_spec
from service.dashboard.figures import (
    CalibrationPoint,
    MatrixCell,
    Sweep,
    calibration_figure,
    fit_matrix_figure,
    memory_breakdown_figure,
    sweep_figure,
    tco_figure,
)

DEFAULTS: dict[str, Any] = {
    "model": "meta-llama/Llama-3.1-8B",
    "method": "qlora",
    "gpu": "rtx-4090",
    "batch_size": 1,
    "seq_len": 2048,
    "gradient_checkpointing": "true",
    "optimizer": "adamw",
    "lora_r": 16,
    "tokens": 30_000_000,  # estimator.tco's default dataset: 10k examples x 1k tokens x 3 epochs
}
SEQ_SWEEP = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
BATCH_SWEEP = (1, 2, 4, 8, 16, 32, 64, 128)
METHODS = tuple(m.value for m in Method)
MAX_TOKENS_PER_RUN = 10**15
MAX_RECORDS = 2000
MAX_RECORD_BYTES = 1 << 20


@dataclass(frozen=True)
class DashboardInput:
    """A validated dashboard request: the spec, and the tokens one training run processes."""

    spec: TrainingSpec
    tokens: int


def parse_input(params: Mapping[str, Any], *, catalog_only: bool = True) -> DashboardInput:
    """Dashboard controls (query parameters, CLI flags) -> a checked spec; SpecError lists every problem.

    Missing or empty values take :data:`DEFAULTS`; ``gpu`` set to ``none`` drops the GPU. With
    ``catalog_only`` (over HTTP) the model must be a catalog id: the estimator would also read a
    config.json path, which must not let a web client probe the server's files.
    """

    def get(key: str) -> Any:
        v = params.get(key)
        return DEFAULTS[key] if v is None or v == "" else v

    raw: dict[str, Any] = {
        "model": get("model"),
        "method": get("method"),
        "batch_size": get("batch_size"),
        "seq_len": get("seq_len"),
        "gradient_checkpointing": get("gradient_checkpointing"),
        "optimizer": get("optimizer"),
    }
    gpu = get("gpu")
    if gpu is not None and str(gpu).strip().lower() != "none":
        raw["gpu"] = gpu
    if raw["method"] in ("lora", "qlora"):
        raw["lora"] = {"r": get("lora_r")}
    problems: list[Problem] = []
    if catalog_only and (not isinstance(raw["model"], str) or find_model(raw["model"]) is None):
        problems.append(Problem("model", f"unknown model {raw['model']!r}: give a catalog id (see /v1/models)"))
        raw["model"] = DEFAULTS["model"]  # still check the other fields, and report everything at once
    tokens = 0
    try:
        tokens = int(get("tokens"))
        if not 1 <= tokens <= MAX_TOKENS_PER_RUN:
            raise ValueError
    except (TypeError, ValueError):
        problems.append(Problem("tokens", f"tokens per run must be an integer from 1 to {MAX_TOKENS_PER_RUN:,}"))
    try:
        spec = check_spec(raw)
    except SpecError as exc:
        raise SpecError(exc.problems + problems) from None
    if problems:
        raise SpecError(problems)
    return DashboardInput(spec=spec, tokens=tokens)


def with_method(spec: TrainingSpec, method: str) -> TrainingSpec:
    """The same run trained with another method (adapter settings kept for lora / qlora)."""
    data = spec.to_json()
    data["method"] = method
    if method == Method.FULL.value:
        data["lora"] = None
    elif data.get("lora") is None:
        data["lora"] = {"r": DEFAULTS["lora_r"]}
    if method != Method.QLORA.value:
        data["quantization"] = None
    return check_spec(data)


def sweep(spec: TrainingSpec, axis: str, values: tuple[int, ...]) -> Sweep:
    """Estimates of ``spec`` along ``axis`` (seq_len or batch_size); the spec's own value is included."""
    points = tuple(sorted({*values, int(getattr(spec, axis))}))
    # model_copy skips re-validation: only a size changes, and every size here is a valid one.
    ests = tuple(estimate(spec.model_copy(update={axis: v})) for v in points)
    lf = estimate(spec).largest_fit
    largest = None if lf is None else (lf.seq_len if axis == "seq_len" else lf.batch_size)
    return Sweep(method=spec.method.value, axis=axis, values=points, estimates=ests, largest=largest)


def method_sweeps(spec: TrainingSpec) -> list[Sweep]:
    """Sequence-length and batch sweeps for full, LoRA and QLoRA around ``spec``."""
    out: list[Sweep] = []
    for method in METHODS:
        variant = with_method(spec, method)
        out.append(sweep(variant, "seq_len", SEQ_SWEEP))
        out.append(sweep(variant, "batch_size", BATCH_SWEEP))
    return out


def fit_matrix(spec: TrainingSpec, tokens: int, gpus: list[str] | None = None) -> list[MatrixCell]:
    """Every catalog GPU (or ``gpus``) × every method at the spec's batch and sequence length, through
    ``estimator.plan`` (which also gives the time and cost of one run of ``tokens`` tokens)."""
    cells: list[MatrixCell] = []
    for method in METHODS:
        variant = with_method(spec, method).model_copy(update={"gpu": None})
        result = plan(PlanRequest(spec=variant, gpus=gpus, tokens_per_run=tokens))
        cells.extend(MatrixCell(method=method, row=row) for row in result.rows)
    return cells


def records_dir() -> Path:
    """Where calibration records live: ``TUNECAST_RECORDS`` or ``calibration_data/records``."""
    env = os.environ.get("TUNECAST_RECORDS")
    if env:
        return Path(env)
    from estimator.calibration import fitted_path

    return fitted_path().parent / "records"


@dataclass
class CalibrationData:
    points: list[CalibrationPoint] = field(default_factory=list)
    skipped: int = 0


def calibration_points(directory: Path | None = None) -> CalibrationData:
    """Predicted vs measured peak allocated bytes of every usable record (bounded, skips bad files).

    The prediction is the one stored in the record when present, else the current estimator's.
    """
    root = directory or records_dir()
    out = CalibrationData()
    if not root.is_dir():
        return out
    for path in sorted(root.rglob("*.json"))[:MAX_RECORDS]:
        try:
            if path.stat().st_size > MAX_RECORD_BYTES:
                raise ValueError("too large")
            rec = json.loads(path.read_text(encoding="utf-8"))
            measured = rec.get("measured") or {}
            m_peak = measured.get("peak_allocated")
            if rec.get("oom") or rec.get("error") or not isinstance(m_peak, int):
                raise ValueError("no measurement")
            spec = rec.get("spec") or {}
            pred = (rec.get("prediction") or {}).get("peak_allocated")
            if not isinstance(pred, int):
                pred = estimate(check_spec(spec)).memory.peak_allocated
            model = spec.get("model")
            name = model if isinstance(model, str) else (model or {}).get("name", "inline model")
            label = f"{name} · {spec.get('method')} · b{spec.get('batch_size')}×s{spec.get('seq_len')}"
            gpu = str(spec.get("gpu") or rec.get("backend") or "?")
            out.points.append(CalibrationPoint(gpu=gpu, label=label, predicted_bytes=pred, measured_bytes=m_peak))
        except (OSError, ValueError, TypeError, AttributeError, SpecError):
            out.skipped += 1
    return out


def tco_bill(spec: TrainingSpec, tokens: int) -> dict[str, Any] | None:
    """The TCO bill (``estimator.tco``) as JSON, for the spec and a run of about ``tokens`` tokens.

    None when the TCO module is not installed or the spec has no GPU (the bill prices GPU-hours).
    The programme keeps ``estimator.tco``'s defaults except the tokens per example, chosen so that
    examples x tokens per example x epochs is the dashboard's tokens per run.
    """
    if spec.gpu is None:
        return None
    try:
        from estimator.tco import CostRequest, DatasetPlan, Programme, tco
    except ModuleNotFoundError:  # pragma: no cover - the TCO module is optional
        return None
    base = DatasetPlan()
    per_example = max(1, round(tokens / (base.examples * base.epochs)))
    try:
        dataset = DatasetPlan(examples=base.examples, tokens_per_example=per_example, epochs=base.epochs)
        report = tco(CostRequest(training=spec, programme=Programme(dataset=dataset)))
    except (SpecError, ValueError):
        return None  # e.g. a GPU without a price or peak rate: no bill, the other charts stand
    bill: dict[str, Any] = report.bill.model_dump(mode="json")
    return bill


def summary(est: Estimate) -> dict[str, Any]:
    """The headline numbers of an estimate, as the estimator gives them (bytes, tokens/s)."""
    return {
        "model": est.spec["model"] if isinstance(est.spec["model"], str) else "inline model",
        "method": est.spec["method"],
        "gpu": None if est.gpu is None else est.gpu.id,
        "usable_bytes": None if est.gpu is None else est.gpu.usable_bytes,
        "fits": est.fits,
        "headroom_bytes": est.headroom_bytes,
        "peak_phase": est.memory.peak_phase.value,
        "peak_allocated": est.memory.peak_allocated,
        "peak_device": est.memory.peak_device,
        "largest_fit": None if est.largest_fit is None else est.largest_fit.model_dump(),
        "tokens_per_second": est.throughput.tokens_per_second,
        "step_time_s": est.throughput.step_time_s,
        "assumptions": est.assumptions,
    }


def build_figures(inp: DashboardInput, *, tco: bool = True, calibration: bool = True
                  ) -> tuple[dict[str, go.Figure], dict[str, Any]]:  # fmt: skip
    """Every chart for one dashboard input, by panel id, and the summary of the main estimate.

    Panels: ``breakdown`` (a), ``seq`` and ``batch`` (b), ``matrix`` (c), ``tco`` (d: when the TCO
    module exists and ``tco``), ``calibration`` (e: when records exist and ``calibration``).
    """
    spec = inp.spec
    est = estimate(spec)
    usable = None if est.gpu is None else est.gpu.usable_bytes
    gpu_id = None if est.gpu is None else est.gpu.id
    sweeps = method_sweeps(spec)
    figs: dict[str, go.Figure] = {
        "breakdown": memory_breakdown_figure(est),
        "seq": sweep_figure(sweeps, "seq_len", usable, gpu_id, current=spec.seq_len),
        "batch": sweep_figure(sweeps, "batch_size", usable, gpu_id, current=spec.batch_size),
        "matrix": fit_matrix_figure(fit_matrix(spec, inp.tokens), inp.tokens),
    }
    if tco:
        bill = tco_bill(spec, inp.tokens)
        if bill is not None:
            figs["tco"] = tco_figure(bill)
    if calibration:
        cal = calibration_points()
        if cal.points:
            figs["calibration"] = calibration_figure(cal.points)
    return figs, summary(est)
