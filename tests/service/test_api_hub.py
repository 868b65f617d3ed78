"""TUNECAST_ALLOW_HUB_LOOKUP: off by default; when on, only a config.json, only over HTTPS."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import assert_error_body, make_client, make_settings
from pydantic import ValidationError

from estimator.models import find_model
from service.api.hub import HubLookup, is_hub_id


def test_hub_lookup_is_off_by_default() -> None:
    assert make_settings().allow_hub_lookup is False
    with make_client() as c:
        r = c.post("/v1/estimates", json={"model": "someone/brand-new-model"})
        assert "hub look-up is off" in assert_error_body(r.json(), 404, "unknown_model")[0]["message"]


def test_hub_url_must_be_https() -> None:
    with pytest.raises(ValidationError):
        make_settings(hub_url="http://huggingface.co")


def test_only_owner_slash_name_ids_are_looked_up() -> None:
    assert is_hub_id("meta-llama/Llama-3.1-8B")
    for bad in ("../etc/passwd", "a/../b", "/abs/path", "a/b/c", "https://x/y", "owner/na me", "a/b?x=1"):
        assert not is_hub_id(bad), bad


def test_hub_config_is_used_inline_when_lookup_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    smol = find_model("HuggingFaceTB/SmolLM2-135M")
    assert smol is not None
    fetched: list[str] = []

    async def fake_fetch(self: HubLookup, model_id: str) -> dict[str, Any] | None:
        fetched.append(model_id)
        return dict(smol.config) if model_id == "someone/smol-clone" else None

    monkeypatch.setattr(HubLookup, "_fetch", fake_fetch)
    with make_client(allow_hub_lookup=True) as c:
        r = c.post("/v1/estimates", json={"model": "someone/smol-clone", "gpu": "t4"})
        assert r.status_code == 200, r.text
        assert r.json()["spec"]["model"] == {"config": smol.config, "name": "someone/smol-clone"}
        assert (
            r.json()["params"]["total"]
            == c.post("/v1/estimates", json={"model": "HuggingFaceTB/SmolLM2-135M", "gpu": "t4"}).json()["params"][
                "total"
            ]
        )
        c.post("/v1/estimates", json={"model": "someone/smol-clone", "gpu": "l4"})
        assert fetched == ["someone/smol-clone"]  # cached after the first fetch
        r = c.post("/v1/estimates", json={"model": "someone/missing"})
        assert "hub has no config.json" in assert_error_body(r.json(), 404, "unknown_model")[0]["message"]
        r = c.post("/v1/estimates", json={"model": "/etc/passwd"})
        assert_error_body(r.json(), 404, "unknown_model")
    assert "/etc/passwd" not in fetched
