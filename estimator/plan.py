"""``plan(request)``: one model and method across a list of GPUs, side by side.

Per GPU: whether it fits, the headroom, the largest micro-batch and sequence that fit
(``Estimate.largest_fit``), tokens/s, and the time and cost of one run.

    time per run = tokens_per_run / (tokens/s per GPU x num_gpus)
    cost per run = time per run [h] x price [USD per GPU-hour] x num_gpus

Left out: data loading, evaluation and checkpoint time, start-up and idle time (see the TCO bill for
those), and any discount beyond the catalog's low / typical / high hourly price.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from estimator.errors import Problem, SpecError
from estimator.estimate import estimate
from estimator.gpus import find_gpu, gpu_ids
from estimator.spec import TrainingSpec, check_spec, problems_from_validation

MAX_PLAN_GPUS = 64


class PlanRequest(BaseModel):
    """A spec without a GPU, the GPUs to compare, and how many tokens one run trains on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: TrainingSpec = Field(description="The training spec; its 'gpu' is replaced by each of 'gpus'.")
    gpus: list[str] | None = Field(
        None, min_length=1, max_length=MAX_PLAN_GPUS, description="GPU ids; omitted: the whole catalog."
    )
    tokens_per_run: int = Field(ge=1, le=10**15, description="Training tokens of one run (dataset tokens x epochs).")
    price: Literal["low", "typical", "high"] = Field("typical", description="Which catalog price to use.")


class PlanRow(BaseModel):
    """The answer for one GPU. Sizes in bytes, time in seconds, cost in USD."""

    gpu: str
    name: str
    usable_bytes: int
    peak_device: int
    fits: bool
    headroom_bytes: int
    largest_batch: int
    largest_seq_len: int
    tokens_per_second: float = Field(description="Per GPU.")
    time_per_run_s: float | None = Field(description="None when the GPU has no known peak rate.")
    price_usd_per_gpu_hour: float | None
    cost_per_run_usd: float | None


class Plan(BaseModel):
    spec: dict[str, Any]
    tokens_per_run: int
    price: str
    rows: list[PlanRow]
    cheapest_fit: str | None = Field(description="The GPU that fits with the lowest cost per run.")
    fastest_fit: str | None = Field(description="The GPU that fits with the shortest time per run.")


def check_plan(data: Any) -> PlanRequest:
    """Validate a raw plan request, or raise :class:`SpecError` listing every problem (spec problems
    are those of :func:`check_spec`, prefixed ``spec.``)."""
    if not isinstance(data, dict):
        raise SpecError([Problem("", "a plan request must be a JSON object")])
    problems: list[Problem] = []
    req: PlanRequest | None = None
    try:
        req = PlanRequest.model_validate(data)
    except ValidationError as exc:
        for p in problems_from_validation(exc):
            if p.field.split(".")[0] != "spec" or "spec" not in data:
                problems.append(p)
        if "spec" in data:
            try:
                check_spec(data["spec"])
            except SpecError as spec_exc:
                problems += [Problem(f"spec.{p.field}" if p.field else "spec", p.message) for p in spec_exc.problems]
    spec_gpu = data["spec"].get("gpu") if isinstance(data.get("spec"), dict) else None
    if spec_gpu is not None:
        problems.append(Problem("spec.gpu", "give the GPUs to compare in 'gpus', not in the spec"))
    gpus = data.get("gpus")
    if isinstance(gpus, list):
        known = ", ".join(gpu_ids())
        for i, g in enumerate(gpus):
            if isinstance(g, str) and find_gpu(g) is None:
                problems.append(Problem(f"gpus.{i}", f"unknown GPU {g!r}; known: {known}"))
    if problems or req is None:
        raise SpecError(problems or [Problem("", "invalid plan request")])
    return req


def plan(req: PlanRequest) -> Plan:
    """Estimate the spec on every requested GPU (catalog order when none are given)."""
    ids: list[str] = []
    for g in req.gpus or gpu_ids():
        found = find_gpu(g)
        if found is None:
            raise SpecError([Problem("gpus", f"unknown GPU {g!r}")])
        if found.id not in ids:
            ids.append(found.id)
    n = req.spec.num_gpus
    rows: list[PlanRow] = []
    for gid in ids:
        gpu = find_gpu(gid)
        assert gpu is not None
        est = estimate(req.spec.model_copy(update={"gpu": gid}))
        assert est.gpu is not None and est.largest_fit is not None and est.headroom_bytes is not None
        tps = est.throughput.tokens_per_second
        time_s = req.tokens_per_run / (tps * n) if tps > 0 else None
        price = gpu.price_usd_per_hour.get(req.price)
        cost = None if time_s is None or price is None else time_s / 3600 * price * n
        rows.append(
            PlanRow(
                gpu=gid,
                name=gpu.name,
                usable_bytes=est.gpu.usable_bytes,
                peak_device=est.memory.peak_device,
                fits=bool(est.fits),
                headroom_bytes=est.headroom_bytes,
                largest_batch=est.largest_fit.batch_size,
                largest_seq_len=est.largest_fit.seq_len,
                tokens_per_second=tps,
                time_per_run_s=time_s,
                price_usd_per_gpu_hour=price,
                cost_per_run_usd=cost,
            )
        )
    fitting = [r for r in rows if r.fits]
    priced = [r for r in fitting if r.cost_per_run_usd is not None]
    timed = [r for r in fitting if r.time_per_run_s is not None]
    return Plan(
        spec=req.spec.to_json(),
        tokens_per_run=req.tokens_per_run,
        price=req.price,
        rows=rows,
        cheapest_fit=min(priced, key=lambda r: r.cost_per_run_usd or 0.0).gpu if priced else None,
        fastest_fit=min(timed, key=lambda r: r.time_per_run_s or 0.0).gpu if timed else None,
    )
