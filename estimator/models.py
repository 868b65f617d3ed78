"""The model catalog and model resolution: a catalog id, a local config.json, or an inline config.

Catalog entries are HF ``config.json`` files copied from ``../shared/reference/model_configs`` with
their source (``data/models/*.json``; see ``scripts/vendor_reference.py``). Look-up by HF id is
case-insensitive. Hub look-ups of unknown ids are not done here: the estimator never touches the
network (the service may fetch a config.json when a setting allows it, then passes it inline).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from estimator._data import data_dir
from estimator.errors import Problem

MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class CatalogModel:
    """One embedded model: its HF id, where the config came from, and the config itself."""

    id: str
    source: str
    notes: str
    published_param_count: str
    computed_params: dict[str, Any] | None
    config: dict[str, Any]

    @property
    def model_type(self) -> str:
        from estimator.architecture import text_config

        return str(text_config(self.config).get("model_type", ""))


@cache
def model_catalog() -> dict[str, CatalogModel]:
    """Every embedded model by lower-cased HF id (read lazily, once)."""
    out: dict[str, CatalogModel] = {}
    for path in sorted((data_dir() / "models").glob("*.json")):
        m = _load_entry(path)
        out[m.id.lower()] = m
    return out


@cache
def _catalog_files() -> dict[str, Path]:
    """Lower-cased HF id -> file, from the file names alone (``owner__name.json``)."""
    return {p.stem.replace("__", "/", 1).lower(): p for p in (data_dir() / "models").glob("*.json")}


def _load_entry(path: Path) -> CatalogModel:
    rec = json.loads(path.read_text(encoding="utf-8"))
    return CatalogModel(
        id=rec["model_id"],
        source=rec.get("source", ""),
        notes=rec.get("notes", ""),
        published_param_count=rec.get("published_param_count", ""),
        computed_params=rec.get("computed_params"),
        config=rec["config"],
    )


@cache
def _entry_for(key: str) -> CatalogModel | None:
    path = _catalog_files().get(key)
    return None if path is None else _load_entry(path)


def find_model(model_id: str) -> CatalogModel | None:
    """The catalog entry for an HF id (case-insensitive), or None. Reads only that model's file."""
    key = model_id.strip().lower()
    found = _entry_for(key)
    if found is not None and found.id.lower() == key:
        return found
    return model_catalog().get(key)


def _read_config_file(path: Path) -> dict[str, Any]:
    if path.is_dir():
        path = path / "config.json"
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


@lru_cache(maxsize=256)
def _resolve_str(ref: str) -> tuple[str, dict[str, Any]]:
    found = find_model(ref)
    if found is not None:
        return found.id, found.config
    path = Path(ref).expanduser()
    if ref.endswith(".json") or path.exists():
        return str(path), _read_config_file(path)
    raise LookupError(ref)


def resolve_model(ref: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(display name, HF config dict) for a catalog id, a config.json path, or ``{"config": {...}}``.

    Raises ``LookupError`` for an unknown id and ``ValueError`` / ``OSError`` for a bad file.
    """
    if isinstance(ref, dict):
        cfg = ref["config"]
        name = str(ref.get("name") or text_model_type(cfg) or "inline")
        return name, cfg
    return _resolve_str(ref)


def text_model_type(cfg: dict[str, Any]) -> str:
    from estimator.architecture import text_config

    return str(text_config(cfg).get("model_type", ""))


def model_problems(ref: str | dict[str, Any]) -> list[Problem]:
    """Everything wrong with a model reference: unknown id, unreadable file, unsupported config."""
    from estimator.architecture import SUPPORTED_FAMILIES, parse_architecture

    try:
        _, cfg = resolve_model(ref)
    except LookupError:
        return [
            Problem(
                "model",
                f"unknown model {ref!r}: not in the catalog (see `estimate models`) and not a config.json path",
            )
        ]
    except (OSError, ValueError) as exc:
        return [Problem("model", f"cannot read the model config: {exc}")]
    try:
        parse_architecture(cfg)
    except KeyError as exc:
        return [Problem("model.config", f"the config lacks a required field {exc}")]
    except (TypeError, ArithmeticError) as exc:
        return [Problem("model.config", f"the config has a field of the wrong type or value: {exc}")]
    except ValueError as exc:
        msg = str(exc)
        if "model_type" in msg:
            msg += f" (supported: {', '.join(SUPPORTED_FAMILIES)})"
        return [Problem("model.config", msg)]
    return []
