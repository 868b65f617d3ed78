"""Lazy access to the embedded data files (estimator/data). Nothing is read at import time."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from estimator.errors import CatalogError


def data_dir() -> Path:
    """The folder holding the embedded catalogs."""
    return Path(str(resources.files("estimator") / "data"))


@cache
def load_json(name: str) -> Any:
    """Parse ``estimator/data/<name>`` once per process."""
    path = data_dir() / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"embedded data file {name} is unreadable: {exc}") from exc
