"""Fixtures of the dashboard tests: specs whose OOM boundary falls inside the sweeps."""

from __future__ import annotations

import pytest

from estimator.spec import TrainingSpec, check_spec


@pytest.fixture(scope="session")
def spec_4090() -> TrainingSpec:
    """Llama-3.1-8B QLoRA on an RTX 4090: fits at 2k tokens, runs out of memory at long context."""
    return check_spec(
        {"model": "meta-llama/Llama-3.1-8B", "method": "qlora", "gpu": "rtx-4090", "batch_size": 1,
         "seq_len": 2048}
    )  # fmt: skip
