"""GET /healthz and /v1/calibration."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from estimator._data import data_dir
from estimator.calibration import fitted_path, summary
from estimator.gpus import gpu_catalog
from estimator.models import model_catalog
from service.api.errors import ERROR_RESPONSES
from service.api.schemas import CalibrationOut, Health

router = APIRouter(tags=["system"])


@cache
def catalog_version() -> str:
    """sha256 over the embedded data files (name and bytes), first 16 hex digits."""
    root = data_dir()
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.json") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@cache
def _file_hash(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def calibration_version() -> str:
    s = summary()
    if s.get("records_hash"):
        return str(s["records_hash"])
    p = fitted_path()
    try:
        st = p.stat()
        return _file_hash(str(p), st.st_mtime_ns, st.st_size)
    except OSError:
        return "default"


@cache
def package_version() -> str:
    try:
        return metadata.version("tunecast")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@router.get("/healthz", response_model=Health, operation_id="get_health", summary="Liveness and data versions")
async def health() -> Health:
    return Health(
        status="ok",
        version=package_version(),
        catalog_version=catalog_version(),
        calibration_version=calibration_version(),
        models=len(model_catalog()),
        gpus=len(gpu_catalog()),
    )


def _count(v: Any) -> int:
    if isinstance(v, bool):
        return 0
    if isinstance(v, int):
        return v
    return len(v) if isinstance(v, list | dict) else 0


@router.get(
    "/v1/calibration",
    response_model=CalibrationOut,
    operation_id="get_calibration",
    summary="The fitted calibration in use (or that defaults are)",
    responses={401: ERROR_RESPONSES[401]},
)
async def calibration() -> CalibrationOut:
    s = summary()  # its 'path' is a server detail and is not returned
    residuals = s.get("residuals")
    return CalibrationOut(
        present=bool(s.get("present")),
        records=_count(s.get("records")),
        records_hash=None if s.get("records_hash") is None else str(s["records_hash"]),
        gpus=[str(g) for g in s.get("gpus") or []],
        residuals=residuals if isinstance(residuals, dict) else {},
    )
