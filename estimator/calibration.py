"""Coefficients that theory cannot know: CUDA context, allocator slack, efficiency (MFU).

Defaults hold until ``calibration_data/fitted.json`` (written by ``estimate calibrate fit``) exists;
it is read lazily, once, and per GPU id. ``TUNECAST_CALIBRATION`` points at another fitted file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from estimator.spec import Method

MIB = 1 << 20

# Defaults (MEMORY_MODEL.md "Environment"): a CUDA 12 context with lazy module loading takes
# 0.3-0.6 GiB; the caching allocator holds 5-15 % above the allocated peak at the peak.
DEFAULT_CUDA_CONTEXT = 512 * MIB
DEFAULT_ALLOCATOR_SLACK = 0.05
# NCCL communicators and buffers per GPU on multi-GPU runs (order of NCCL_BUFFSIZE x channels).
DEFAULT_NCCL_BYTES = 384 * MIB


@dataclass(frozen=True)
class Coefficients:
    """Environment coefficients for one GPU (or the defaults)."""

    cuda_context_bytes: int = DEFAULT_CUDA_CONTEXT
    allocator_slack: float = DEFAULT_ALLOCATOR_SLACK
    nccl_bytes: int = DEFAULT_NCCL_BYTES
    mfu: dict[str, float] = field(default_factory=dict)
    source: str = "default"
    records: int = 0


def fitted_path() -> Path:
    env = os.environ.get("TUNECAST_CALIBRATION")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "calibration_data" / "fitted.json"


@cache
def _load(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def reload() -> None:
    """Forget the cached fitted file (after ``estimate calibrate fit`` wrote a new one)."""
    _load.cache_clear()
    coefficients.cache_clear()


@cache
def coefficients(gpu_id: str | None) -> Coefficients:
    """The coefficients for a GPU: fitted ones when the fitted file has that GPU, else defaults."""
    data = _load(str(fitted_path()))
    gpus = data.get("gpus", {}) if isinstance(data.get("gpus"), dict) else {}
    entry = gpus.get(gpu_id or "")
    if not isinstance(entry, dict):
        return Coefficients()
    return Coefficients(
        cuda_context_bytes=int(entry.get("cuda_context_bytes", DEFAULT_CUDA_CONTEXT)),
        allocator_slack=float(entry.get("allocator_slack", DEFAULT_ALLOCATOR_SLACK)),
        nccl_bytes=int(entry.get("nccl_bytes", DEFAULT_NCCL_BYTES)),
        mfu={str(k): float(v) for k, v in (entry.get("mfu") or {}).items()},
        source="fitted",
        records=int(entry.get("records", 0)),
    )


def fitted_mfu(c: Coefficients, method: Method) -> float | None:
    v = c.mfu.get(method.value)
    return v if v is not None and v > 0 else None


def summary() -> dict[str, Any]:
    """What the fitted file says, for ``GET /v1/calibration`` and ``estimate calibrate report``."""
    data = _load(str(fitted_path()))
    return {
        "path": str(fitted_path()),
        "present": bool(data),
        "records": data.get("records", 0),
        "records_hash": data.get("records_hash"),
        "gpus": sorted((data.get("gpus") or {}).keys()),
        "residuals": data.get("residuals", {}),
    }
