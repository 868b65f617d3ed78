"""tunecast's estimator: will a fine-tuning run fit, how fast will it go, what will it cost.

Pure and light: typed spec in, typed answer out. Importing it loads no torch, transformers,
fastapi or plotly (``tests/test_imports.py`` proves it). The public surface is pinned by
``tests/test_public_api.py``.

    >>> from estimator import estimate, TrainingSpec
    >>> est = estimate(TrainingSpec.model_validate({"model": "meta-llama/Llama-3.1-8B", "gpu": "h100"}))
"""

from typing import TYPE_CHECKING, Any

from estimator.errors import (
    CatalogError,
    Problem,
    SpecError,
    TunecastError,
    UnknownGPUError,
    UnknownModelError,
)
from estimator.estimate import Estimate, estimate
from estimator.gpus import GPU, find_gpu, gpu_catalog, gpu_ids
from estimator.models import find_model, model_catalog, resolve_model
from estimator.spec import (
    Attention,
    Checkpointing,
    Device,
    DType,
    LoraSpec,
    Loss,
    Method,
    Optimizer,
    QuantSpec,
    QuantType,
    Sharding,
    TrainingSpec,
    check_spec,
)

if TYPE_CHECKING:
    from estimator.decision import Decision, DecisionRequest, Gap, Route, decide
    from estimator.tco import Bill, CostReport, CostRequest, Programme, tco

# The programme-cost and decision modules load on first use: `estimate memory` never needs them.
_LAZY = {
    "Decision": "estimator.decision",
    "DecisionRequest": "estimator.decision",
    "Gap": "estimator.decision",
    "Route": "estimator.decision",
    "decide": "estimator.decision",
    "Bill": "estimator.tco",
    "CostReport": "estimator.tco",
    "CostRequest": "estimator.tco",
    "Programme": "estimator.tco",
    "tco": "estimator.tco",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'estimator' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "GPU",
    "Attention",
    "Bill",
    "CatalogError",
    "Checkpointing",
    "CostReport",
    "CostRequest",
    "DType",
    "Decision",
    "DecisionRequest",
    "Device",
    "Estimate",
    "Gap",
    "LoraSpec",
    "Loss",
    "Method",
    "Optimizer",
    "Problem",
    "Programme",
    "QuantSpec",
    "QuantType",
    "Route",
    "Sharding",
    "SpecError",
    "TrainingSpec",
    "TunecastError",
    "UnknownGPUError",
    "UnknownModelError",
    "check_spec",
    "decide",
    "estimate",
    "find_gpu",
    "find_model",
    "gpu_catalog",
    "gpu_ids",
    "model_catalog",
    "resolve_model",
    "tco",
]
