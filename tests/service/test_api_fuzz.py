"""Property-based fuzzing: no input gives a 5xx, and every failure has the one error body.

Bounded (few examples per operation) so the folder stays fast on 2 cores.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from api_helpers import assert_error_body, make_settings
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from estimator.models import find_model
from service.api.app import create_app

APP = create_app(make_settings())
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
CLIENT = TestClient(APP, raise_server_exceptions=False)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_openapi_fuzzing_never_gives_a_server_error(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_error_body(response.json(), response.status_code)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
FIELDS = ["model", "method", "lora", "quantization", "batch_size", "seq_len", "gpu", "num_gpus", "sharding",
          "gradient_checkpointing", "optimizer", "stack", "device", "autocast"]  # fmt: skip


@FAST
@given(
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6),
    st.sampled_from(["/v1/estimates", "/v1/plans"]),
)
def test_arbitrary_json_specs_never_give_a_server_error(body: dict[str, Any], path: str) -> None:
    payload: Any = body if path == "/v1/estimates" else {"spec": body, "tokens_per_run": 1000}
    r = CLIENT.post(path, content=json.dumps(payload), headers={"content-type": "application/json"})
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        assert_error_body(r.json(), r.status_code)


LLAMA = find_model("meta-llama/Llama-3.2-1B")
CONFIG_KEYS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
               "intermediate_size", "vocab_size"]  # fmt: skip


@FAST
@given(
    st.dictionaries(
        st.sampled_from(CONFIG_KEYS),
        st.integers(min_value=-(2**40), max_value=2**20) | st.sampled_from([0, 1, 7, "12", None, 1.5, [1]]),
        max_size=3,
    ),
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=1, max_value=10**8),
)
def test_inline_configs_never_give_a_server_error(override: dict[str, Any], batch: int, seq: int) -> None:
    assert LLAMA is not None
    spec = {
        "model": {"config": {**LLAMA.config, **override}},
        "gpu": "h100",
        "batch_size": batch,
        "seq_len": seq,
    }
    r = CLIENT.post("/v1/estimates", json=spec)
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        assert_error_body(r.json(), r.status_code)


MALFORMED = {
    "Qwen/Qwen3-30B-A3B": [{"decoder_sparse_step": 0}, {"num_experts": [1]}, {"mlp_only_layers": 5},
                           {"num_hidden_layers": 10**9}],
    "meta-llama/Llama-3.2-1B": [{"intermediate_size": [1]}, {"num_hidden_layers": 10**12}],
}  # fmt: skip


def test_malformed_inline_configs_are_422_not_500_nor_slow() -> None:
    import time

    for model_id, overrides in MALFORMED.items():
        found = find_model(model_id)
        assert found is not None
        for override in overrides:
            t0 = time.perf_counter()
            spec = {"model": {"config": {**found.config, **override}}, "gpu": "h100", "lora": {"r": 0}}
            r = CLIENT.post("/v1/estimates", json=spec)
            problems = assert_error_body(r.json(), 422, "invalid_spec")
            assert {p["field"].split(".")[0] for p in problems} == {"model", "lora"}, (override, problems)
            assert time.perf_counter() - t0 < 1.0, override
