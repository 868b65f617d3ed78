"""Model references over HTTP: catalog ids only, plus (when allowed) a config.json from the HF hub.

The estimator also accepts a local config.json path; over HTTP that would let a client read files on
the server, so the service never passes an unknown string through. With ``TUNECAST_ALLOW_HUB_LOOKUP``
on, an id shaped like ``owner/name`` is looked up as ``<hub>/<id>/resolve/main/config.json`` over
HTTPS only: one JSON file of at most 1 MiB, parsed as data. No code is downloaded or run (there is no
trust_remote_code anywhere), and the config is passed to the estimator inline.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from typing import Any

import httpx

from estimator.errors import Problem, SpecError
from estimator.models import MAX_CONFIG_BYTES, find_model
from estimator.spec import check_spec
from service.api.settings import Settings

_HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def is_hub_id(ref: str) -> bool:
    return bool(_HF_ID.match(ref)) and ".." not in ref


class HubLookup:
    """Fetches and remembers config.json files (a bounded cache; failures are not cached)."""

    def __init__(self, settings: Settings, max_entries: int = 256) -> None:
        self.base = settings.hub_url
        self.timeout = settings.hub_timeout_s
        self.token = settings.hub_token.get_secret_value() if settings.hub_token else None
        self.max_entries = max_entries
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()

    async def config(self, model_id: str) -> dict[str, Any] | None:
        """The config dict, or None when the hub does not have it (or is unreachable)."""
        if not is_hub_id(model_id):
            return None
        if model_id in self._cache:
            self._cache.move_to_end(model_id)
            return self._cache[model_id]
        cfg = await self._fetch(model_id)
        if cfg is not None:
            self._cache[model_id] = cfg
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return cfg

    async def _fetch(self, model_id: str) -> dict[str, Any] | None:
        url = f"{self.base}/{model_id}/resolve/main/config.json"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=True, max_redirects=5)
            async with client, client.stream("GET", url, headers=headers) as resp:
                hops = [*resp.history, resp]
                if resp.status_code != 200 or any(r.url.scheme != "https" for r in hops):
                    return None
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_CONFIG_BYTES:
                        return None
                    chunks.append(chunk)
        except httpx.HTTPError:
            return None
        try:
            data = json.loads(b"".join(chunks))
        except (ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) else None


# Counts that the estimator loops over: bounded at the HTTP edge so one request cannot hold a worker.
_LOOP_COUNTS = ("num_hidden_layers", "n_layer", "num_layers", "num_experts", "n_routed_experts",
                "num_local_experts", "first_k_dense_replace")  # fmt: skip
MAX_LOOP_COUNT = 100_000


def inline_config_problems(cfg: dict[str, Any]) -> list[Problem]:
    """Problems of an inline config that the estimator would not report itself (it reports KeyError
    and ValueError; a wrongly typed field can raise anything else), plus oversized loop counts."""
    from estimator.architecture import parse_architecture, text_config

    problems: list[Problem] = []
    for c in (cfg, text_config(cfg)):
        for key in _LOOP_COUNTS:
            v = c.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v > MAX_LOOP_COUNT:
                problems.append(Problem(f"model.config.{key}", f"must be at most {MAX_LOOP_COUNT}, got {v}"))
    if problems:
        return problems
    try:
        parse_architecture(cfg)
    except (KeyError, ValueError):
        pass  # reported by check_spec with its own message
    except Exception as exc:  # any other failure is a malformed config, not a server error
        return [Problem("model.config", f"the config is malformed ({type(exc).__name__}: {exc})"[:300])]
    return []


async def prepare_spec(data: Any, hub: HubLookup | None) -> Any:
    """The raw spec with its model made safe for the estimator: a catalog id as is, a hub id as an
    inline config (when allowed); any other string raises :class:`SpecError` listing the unknown
    model with every other problem of the spec, without touching the file system."""
    if not isinstance(data, dict):
        return data
    ref = data.get("model")
    if isinstance(ref, dict) and isinstance(ref.get("config"), dict):
        problems = inline_config_problems(ref["config"])
        if problems:
            raise SpecError(problems + _other_problems(data))
        return data
    if not isinstance(ref, str) or not ref.strip() or len(ref) > 4096 or find_model(ref) is not None:
        return data
    ref = ref.strip()
    if hub is not None:
        cfg = await hub.config(ref)
        if cfg is not None:
            return {**data, "model": {"config": cfg, "name": ref}}
    hint = "the hub has no config.json for it" if hub is not None else "hub look-up is off"
    problems = [Problem("model", f"unknown model {ref!r}: not in the catalog (see GET /v1/models); {hint}")]
    raise SpecError(problems + _other_problems(data))


def _other_problems(data: dict[str, Any]) -> list[Problem]:
    """The spec's problems outside ``model`` (checked with an empty stand-in config)."""
    try:
        check_spec({**data, "model": {"config": {}}})
    except SpecError as exc:
        return [p for p in exc.problems if p.field.split(".")[0] != "model"]
    return []
