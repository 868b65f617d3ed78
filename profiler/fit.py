"""Fit what theory cannot know from calibration records, and report how well the estimator agrees.

``fit_records`` fits, per GPU (and per software stack within it), only the environment terms:

``cuda_context_bytes``  median over runs of NVML's process peak minus torch's reserved peak (the
                        context, cuBLAS workspaces and lazily loaded kernels as they are at run time);
                        where no run has an NVML peak, the median idle measurement (NVML used minus
                        reserved right after ``torch.cuda.init()``). Runs with paged optimizers are
                        left out (their managed-memory states are in NVML's figure, not the context).
``allocator_slack``     median of ``reserved / allocated - 1`` at the allocated peak.
``mfu``                 per method, median of measured tokens/s x FLOPs per token / peak dense rate.

Everything else (weights, activations, the loss spike) is theory: it is *not* absorbed into a
coefficient. Its disagreement is reported as residuals of predicted vs measured, per GPU and metric
(``peak_allocated``, ``peak_reserved``, ``peak_device``, ``step_time_s``, each phase's peak, and each
phase's categories where the record has them). CPU records (backends ``cpu`` / ``cpu-fake``) are
predicted with ``device: cpu``, grouped under ``"cpu"``, and feed residuals only.

Errors are relative: ``(predicted - measured) / measured``; for a category inside a phase the
denominator is that phase's measured peak (a category's error as a share of the memory in use).
"""

from __future__ import annotations

import copy
import hashlib
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiler import CATEGORIES, PHASES

CPU_BACKENDS = ("cpu", "cpu-fake")
CPU_GROUP = "cpu"
PAGED_OPTIMIZERS = ("paged_adamw", "paged_adamw_8bit")


# ----------------------------------------------------------------------------- loading
@dataclass
class Loaded:
    records: list[dict[str, Any]]
    paths: list[Path]
    problems: list[str] = field(default_factory=list)


def record_files(root: str | Path) -> list[Path]:
    """Every ``*.json`` under ``root`` (recursively), sorted by path relative to ``root``."""
    base = Path(root)
    if base.is_file():
        return [base]
    if not base.is_dir():
        return []
    return sorted(
        (p for p in base.rglob("*.json") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.relative_to(base).as_posix(),
    )


def load_records(root: str | Path) -> Loaded:
    """Read every record file; unreadable or wrong-schema files are listed in ``problems``."""
    from profiler.record import read_record

    out = Loaded([], [])
    for path in record_files(root):
        try:
            record = read_record(path)
        except (OSError, ValueError) as exc:
            out.problems.append(f"{path}: {exc}")
            continue
        if not isinstance(record.get("spec"), dict) or "backend" not in record:
            out.problems.append(f"{path}: not a calibration record (no spec/backend)")
            continue
        out.records.append(record)
        out.paths.append(path)
    return out


def records_hash(paths: Iterable[Path], root: str | Path) -> str:
    """sha256 over the sorted record files: each file's relative path and bytes."""
    base = Path(root)
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda p: p.relative_to(base).as_posix() if base.is_dir() else p.name):
        rel = p.relative_to(base).as_posix() if base.is_dir() else p.name
        h.update(rel.encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


# ----------------------------------------------------------------------------- helpers
def group_of(record: dict[str, Any]) -> str:
    """The GPU id a record belongs to ("cpu" for CPU backends)."""
    if record.get("backend") in CPU_BACKENDS:
        return CPU_GROUP
    gpu = (record.get("environment") or {}).get("gpu") or {}
    return str(gpu.get("id") or record["spec"].get("gpu") or gpu.get("slug") or "unknown-gpu")


def stack_of(record: dict[str, Any]) -> str:
    env = record.get("environment") or {}
    return ",".join(f"{k}={env.get(k)}" for k in ("torch", "transformers", "peft", "bitsandbytes", "cuda"))


def prediction_spec(record: dict[str, Any]) -> dict[str, Any]:
    """The spec to predict a record with: CPU records as ``device: cpu`` without a GPU."""
    spec = copy.deepcopy(record["spec"])
    if record.get("backend") in CPU_BACKENDS:
        spec["device"] = "cpu"
        spec.pop("gpu", None)
    else:
        spec.setdefault("device", "cuda")
        gid = group_of(record)
        if "gpu" not in spec and _catalog_gpu(gid) is not None:
            spec["gpu"] = gid
    return spec


def predict_record(record: dict[str, Any]) -> dict[str, Any] | None:
    """The current estimator's prediction for a record (None when the estimator rejects its spec)."""
    from estimator.errors import SpecError
    from estimator.estimate import estimate
    from estimator.spec import check_spec

    try:
        return estimate(check_spec(prediction_spec(record))).model_dump(mode="json")
    except (SpecError, ValueError, KeyError):
        return None


def _catalog_gpu(gid: str) -> Any:
    from estimator.gpus import find_gpu

    return find_gpu(gid) if gid and gid != CPU_GROUP else None


def peak_rate(gid: str) -> float | None:
    """Peak dense rate (FLOP/s) the estimator's throughput uses for this GPU."""
    gpu = _catalog_gpu(gid)
    if gpu is None:
        return None
    rate = gpu.bf16_flops if gpu.bf16_supported and gpu.bf16_flops else (gpu.fp16_flops or gpu.fp32_flops)
    return float(rate) if rate else None


def usable(record: dict[str, Any]) -> bool:
    """A completed measurement (no OOM, no error, a measured block with a peak)."""
    m = record.get("measured")
    return bool(m) and not record.get("oom") and record.get("error") is None and bool(m.get("peak_allocated"))


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * 0.9
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def error_stats(pairs: list[tuple[float, float]], denominators: list[float] | None = None) -> dict[str, Any]:
    """n, median |error|, p90 |error|, median signed error, median |error| in units (relative errors)."""
    rel: list[float] = []
    absolute: list[float] = []
    for i, (pred, meas) in enumerate(pairs):
        denom = denominators[i] if denominators is not None else meas
        if not denom:
            continue
        rel.append((pred - meas) / denom)
        absolute.append(abs(pred - meas))
    abs_rel = [abs(e) for e in rel]
    return {
        "n": len(rel),
        "median_abs_error": _median(abs_rel),
        "p90": _p90(abs_rel),
        "median_error": _median(rel),
        "median_abs_error_units": _median(absolute),
    }


# ----------------------------------------------------------------------------- fitting
@dataclass
class Coefs:
    cuda_context_bytes: int | None
    context_source: str
    allocator_slack: float | None
    mfu: dict[str, float]
    n: int
    n_context: int
    n_slack: int
    n_mfu: dict[str, int]


def fit_coefficients(gid: str, items: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> Coefs:
    """Context, slack and MFU from (record, current prediction) pairs of one GPU and stack."""
    contexts: list[float] = []
    idle: list[float] = []
    slacks: list[float] = []
    mfus: dict[str, list[float]] = defaultdict(list)
    rate = peak_rate(gid)
    for record, pred in items:
        m = record["measured"]
        ctx_idle = (m.get("idle") or {}).get("context_bytes")
        if ctx_idle is not None:
            idle.append(float(ctx_idle))
        paged = record["spec"].get("optimizer") in PAGED_OPTIMIZERS
        reserved = m.get("peak_reserved")
        if m.get("peak_device") is not None and reserved is not None and not paged:
            contexts.append(float(m["peak_device"] - reserved))
        at_peak = m.get("reserved_at_allocated_peak") or reserved
        if at_peak and m.get("peak_allocated"):
            slacks.append(at_peak / m["peak_allocated"] - 1.0)
        tps = m.get("tokens_per_second")
        if tps and rate and pred is not None:
            fpt = float(pred["throughput"]["flops_per_token"])
            mfus[str(record["spec"].get("method", "lora"))].append(tps * fpt / rate)
    if contexts:
        ctx, source = _median(contexts), "nvml_peak_minus_reserved_peak"
    elif idle:
        ctx, source = _median(idle), "idle_after_cuda_init"
    else:
        ctx, source = None, "none"
    slack = _median(slacks)
    return Coefs(
        cuda_context_bytes=None if ctx is None else max(0, round(ctx)),
        context_source=source,
        allocator_slack=None if slack is None else max(0.0, slack),
        mfu={k: float(statistics.median(v)) for k, v in sorted(mfus.items())},
        n=len(items),
        n_context=len(contexts) or len(idle),
        n_slack=len(slacks),
        n_mfu={k: len(v) for k, v in sorted(mfus.items())},
    )


def _entry(c: Coefs) -> dict[str, Any]:
    from estimator.calibration import DEFAULT_ALLOCATOR_SLACK, DEFAULT_CUDA_CONTEXT, DEFAULT_NCCL_BYTES

    return {
        "cuda_context_bytes": c.cuda_context_bytes if c.cuda_context_bytes is not None else DEFAULT_CUDA_CONTEXT,
        "allocator_slack": c.allocator_slack if c.allocator_slack is not None else DEFAULT_ALLOCATOR_SLACK,
        "nccl_bytes": DEFAULT_NCCL_BYTES,
        "mfu": dict(c.mfu),
        "records": c.n,
        "sources": {
            "cuda_context_bytes": c.context_source if c.cuda_context_bytes is not None else "default",
            "allocator_slack": "median reserved/allocated - 1 at the peak"
            if c.allocator_slack is not None
            else "default",
            "nccl_bytes": "default (single-GPU records cannot measure it)",
            "mfu": "median measured tokens/s x flops_per_token / peak dense rate",
        },
        "n": {"cuda_context_bytes": c.n_context, "allocator_slack": c.n_slack, "mfu": dict(c.n_mfu)},
    }


# ----------------------------------------------------------------------------- residuals
def predicted_with(
    pred: dict[str, Any], coefs: dict[str, Any] | None, spec: dict[str, Any], gid: str
) -> dict[str, float | None]:
    """peak_allocated / reserved / device / step time predicted with the given coefficients
    (``None``: the prediction's own), mirroring ``estimator.estimate``."""
    mem = pred["memory"]
    alloc = float(mem["peak_allocated"])
    if coefs is None:
        step = pred["throughput"].get("step_time_s")
        return {
            "peak_allocated": alloc,
            "peak_reserved": float(mem["peak_reserved"]),
            "peak_device": float(mem["peak_device"]),
            "step_time_s": step,
        }
    reserved = alloc + math.ceil(alloc * float(coefs["allocator_slack"]))
    device = reserved + int(coefs["cuda_context_bytes"]) + int(mem.get("paged_optimizer_states", 0))
    step: float | None = None
    rate = peak_rate(gid)
    mfu = (coefs.get("mfu") or {}).get(str(spec.get("method")))
    if rate and mfu:
        tokens = int(spec["batch_size"]) * int(spec["seq_len"]) * int(spec.get("gradient_accumulation", 1))
        step = tokens * float(pred["throughput"]["flops_per_token"]) / (rate * mfu)
    else:
        step = pred["throughput"].get("step_time_s")
    return {
        "peak_allocated": alloc,
        "peak_reserved": float(reserved),
        "peak_device": float(device),
        "step_time_s": step,
    }


def residuals(
    items: list[tuple[dict[str, Any], dict[str, Any]]], gid: str, coefs: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Per metric error statistics over (record, prediction) pairs of one group (module docstring)."""
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    cat_pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    cat_denoms: dict[str, list[float]] = defaultdict(list)
    for record, pred in items:
        m = record["measured"]
        p = predicted_with(pred, coefs, record["spec"], gid)
        for metric in ("peak_allocated", "peak_reserved", "peak_device", "step_time_s"):
            if gid == CPU_GROUP and metric != "peak_allocated":  # no reserved/device/GPU time on CPU
                continue
            meas, value = m.get(metric), p.get(metric)
            if meas is not None and value is not None:
                pairs[metric].append((float(value), float(meas)))
        pred_phases = pred["memory"].get("phases") or {}
        for phase, mp in (m.get("phases") or {}).items():
            pp = pred_phases.get(phase)
            if pp is None or mp.get("peak") is None:
                continue
            pairs[f"phase.{phase}"].append((float(pp["total"]), float(mp["peak"])))
            cats = mp.get("by_category") or {}
            for cat in CATEGORIES:
                if cat not in cats:
                    continue
                predicted = float(pp.get(cat, 0)) + (float(pp.get("quant_constants", 0)) if cat == "weights" else 0.0)
                cat_pairs[f"{phase}.{cat}"].append((predicted, float(cats[cat])))
                cat_denoms[f"{phase}.{cat}"].append(float(mp["peak"]))
    out = {k: error_stats(v) for k, v in sorted(pairs.items())}
    out.update({k: error_stats(v, cat_denoms[k]) for k, v in sorted(cat_pairs.items())})
    return out


# ----------------------------------------------------------------------------- fit + write
def fit_records(loaded: Loaded, root: str | Path) -> dict[str, Any]:
    """The fitted.json content (module docstring) for the loaded records."""
    by_group: dict[str, list[tuple[dict[str, Any], dict[str, Any] | None]]] = defaultdict(list)
    for record in loaded.records:
        if usable(record):
            by_group[group_of(record)].append((record, predict_record(record)))
    gpus: dict[str, Any] = {}
    res: dict[str, Any] = {}
    for gid, items in sorted(by_group.items()):
        predicted = [(r, p) for r, p in items if p is not None]
        if gid == CPU_GROUP:
            res[gid] = residuals(predicted, gid, None)
            continue
        stacks: dict[str, list[tuple[dict[str, Any], dict[str, Any] | None]]] = defaultdict(list)
        for r, p in items:
            stacks[stack_of(r)].append((r, p))
        stack_entries = {k: _entry(fit_coefficients(gid, v)) for k, v in sorted(stacks.items())}
        # the GPU's coefficients: the stack with the most records (latest-sorting stack on a tie)
        main = max(sorted(stacks), key=lambda k: len(stacks[k]))
        entry = dict(stack_entries[main])
        entry["stack"] = main
        if len(stacks) > 1:
            entry["stacks"] = stack_entries
        gpus[gid] = entry
        res[gid] = residuals([(r, p) for r, p in predicted if stack_of(r) == main], gid, entry)
    return {
        "schema": 1,
        "gpus": gpus,
        "records": len(loaded.records),
        "records_used": sum(len(v) for v in by_group.values()),
        "residuals": res,
        "records_hash": records_hash(loaded.paths, root),
        "notes": [
            "coefficients fit only CUDA context, allocator slack and MFU; activation and loss terms are "
            "theory, and their disagreement is in residuals (relative errors)",
        ],
    }


def write_json_atomic(data: dict[str, Any], path: str | Path) -> Path:
    """Write JSON to ``path`` atomically (see :func:`profiler.record.write_json_atomic`)."""
    from profiler.record import write_json_atomic as _write

    return _write(data, path, indent=1)


def fit_and_write(records_root: str | Path, out: str | Path | None = None) -> tuple[dict[str, Any], Path, Loaded]:
    """Fit the records under ``records_root``, write the fitted file, make the estimator re-read it."""
    from estimator import calibration

    loaded = load_records(records_root)
    if not loaded.records:  # never replace a fitted file with an empty one
        raise FileNotFoundError(f"no calibration records under {records_root}")
    data = fit_records(loaded, records_root)
    path = write_json_atomic(data, out if out is not None else calibration.fitted_path())
    calibration.reload()
    return data, path, loaded


# ----------------------------------------------------------------------------- report
def report(loaded: Loaded) -> dict[str, Any]:
    """Per GPU predicted vs measured with the estimator as it is now (fitted file included)."""
    gpus: dict[str, Any] = {}
    phases: dict[str, Any] = {}
    by_group: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    verdicts: dict[str, dict[str, int]] = defaultdict(lambda: {"runs": 0, "oom": 0, "false_fit": 0, "false_oom": 0})
    for record in loaded.records:
        gid = group_of(record)
        pred = predict_record(record)
        if gid != CPU_GROUP and (record.get("error") is None or record.get("oom")):
            v = verdicts[gid]
            v["runs"] += 1
            v["oom"] += int(bool(record.get("oom")))
            fits = None if pred is None else pred.get("fits")
            if fits is True and record.get("oom"):
                v["false_fit"] += 1
            if fits is False and not record.get("oom"):
                v["false_oom"] += 1
        if pred is not None and usable(record):
            by_group[gid].append((record, pred))
    for gid, items in sorted(by_group.items()):
        res = residuals(items, gid, None)
        stack = sorted({stack_of(r) for r, _ in items})
        gpus[gid] = {
            "n": len(items),
            "median_abs_error_allocated": (res.get("peak_allocated") or {}).get("median_abs_error"),
            "median_abs_error_device": (res.get("peak_device") or {}).get("median_abs_error"),
            "median_abs_error_step_time": (res.get("step_time_s") or {}).get("median_abs_error"),
            "calibration": items[0][1]["calibration"]["source"] if gid != CPU_GROUP else "n/a (cpu)",
            "stacks": stack,
        }
        if gid in verdicts:
            gpus[gid]["fit_verdicts"] = dict(verdicts[gid])
        table: dict[str, Any] = {}
        for phase in PHASES:
            key = f"phase.{phase}"
            if key not in res:
                continue
            cats = {c: res[f"{phase}.{c}"] for c in CATEGORIES if f"{phase}.{c}" in res}
            table[phase] = {**res[key], "categories": cats}
        if table:
            phases[gid] = table
    return {"gpus": gpus, "phases": phases, "records": len(loaded.records), "problems": list(loaded.problems)}
