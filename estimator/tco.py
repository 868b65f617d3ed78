"""The whole cost of a fine-tuning programme: a bill of named lines, and the alternatives beside it.

A programme is one first release (the one-time lines) plus the retrains over a horizon (the
recurring lines). Every line carries its quantity, unit, unit price, amount and where the unit
price comes from (an input, a catalog entry with its date, or a documented default), so the
total can be traced back number by number. ``Bill.total`` is exactly the sum of the lines'
amounts: amounts are :class:`~decimal.Decimal` rounded to the cent, summed without float error.

GPU time comes from the throughput model (``estimator.estimate``)::

    tokens per run   = examples x tokens_per_example x epochs
    GPU-hours / run  = tokens / tokens_per_second_per_GPU / 3600        (x num_gpus wall hours)
    wall hours / run = tokens / (tokens_per_second_per_GPU x num_gpus) / 3600

which assumes ideal data-parallel scaling (communication is left out) and that the efficiency
(MFU) holds for the whole run; the bill says when that efficiency is an uncalibrated default.
Spot capacity adds a restart overhead to GPU time (``tco_defaults.json``).

Defaults: counts and shares are tunecast assumptions stated on each field; prices are data, not
constants: GPU prices from ``gpus.json``, labelling and engineering rates from
``tco_defaults.json``, hosted fine-tuning and retrieval prices from ``pricing.json``, which a user
price file of the same shape overrides section by section.

Left out everywhere: serving the model (inference hosting and per-token costs, except the *extra*
context tokens retrieval adds), storage and egress, failed runs beyond the stated iterations,
calendar time of labelling and review, taxes and discounts from committed-use contracts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, ValidationError, model_validator

from estimator._data import load_json
from estimator.errors import Problem, SpecError
from estimator.estimate import Estimate, estimate
from estimator.gpus import GPU, find_gpu
from estimator.spec import Method, TrainingSpec, check_spec

Money = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
"""US dollars, rounded to the cent; a float in JSON."""

GPU_HOUR = "GPU-hour"
MAX_PRICE_FILE_BYTES = 1 << 20
_CENT = Decimal("0.01")
_FROZEN = ConfigDict(extra="forbid", frozen=True)


class PriceTier(StrEnum):
    """Which catalog price a GPU-hour costs."""

    ON_DEMAND = "on-demand"
    """The catalog's ``typical`` price (specialty clouds' on-demand rates)."""
    SPOT = "spot"
    """The catalog's ``low`` price (marketplace / interruptible), plus a restart overhead."""


class Category(StrEnum):
    """What a line pays for."""

    COMPUTE = "compute"
    """GPU time of training runs."""
    LABELLING = "labelling"
    """Human labels, their review and rework, and synthetic examples."""
    EVALUATION = "evaluation"
    """Eval runs, the regression suite and human review of outputs."""
    ENGINEERING = "engineering"
    """People's time building and maintaining the pipeline."""
    HOSTED_TRAINING = "hosted_training"
    """A fine-tuning API billed per training token."""
    RETRIEVAL = "retrieval"
    """Embedding, vector store and the extra context tokens of a RAG set-up."""


# --------------------------------------------------------------------------------------------
# Inputs


class DatasetPlan(BaseModel):
    """The training data of one run."""

    model_config = _FROZEN

    examples: int = Field(10_000, ge=1, le=10**12, description="Training examples (tunecast assumption).")
    tokens_per_example: int = Field(
        1_000, ge=1, le=10**8, description="Mean tokens per example as trained (prompt + response, packed)."
    )
    epochs: float = Field(3, gt=0, le=1000, description="Passes over the data (3, as Stanford Alpaca).")

    @property
    def tokens_per_run(self) -> int:
        return round(self.examples * self.tokens_per_example * self.epochs)


class LabellingPlan(BaseModel):
    """Human labels and synthetic examples. ``None`` prices come from ``tco_defaults.json``."""

    model_config = _FROZEN

    human_share: float = Field(
        0.1, ge=0, le=1, description="Share of training examples needing a human label (assumption)."
    )
    cost_per_labelled_example: float | None = Field(
        None, ge=0, le=1e6, description="USD per human label; or give annotator_hourly_rate and minutes."
    )
    annotator_hourly_rate: float | None = Field(None, ge=0, le=1e5, description="Default $30/h (see data).")
    minutes_per_example: float | None = Field(None, ge=0, le=1e5, description="Default 3 min (see data).")
    review_overhead: float | None = Field(
        None, ge=0, le=10, description="Extra share reviewed or reworked; default 20% (see data)."
    )
    synthetic_share: float = Field(0.0, ge=0, le=1, description="Share of examples generated by a model.")
    synthetic_cost_per_example: float | None = Field(None, ge=0, le=1e6, description="Default $0.01.")

    @model_validator(mode="after")
    def _consistent(self) -> LabellingPlan:
        problems = []
        if self.human_share + self.synthetic_share > 1:
            problems.append("human_share: human_share + synthetic_share must not exceed 1")
        if self.cost_per_labelled_example is not None and (
            self.annotator_hourly_rate is not None or self.minutes_per_example is not None
        ):
            problems.append(
                "cost_per_labelled_example: give a cost per labelled example OR an annotator hourly rate "
                "and minutes per example, not both"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class IterationPlan(BaseModel):
    """Training runs of one release."""

    model_config = _FROZEN

    training_runs: int = Field(2, ge=1, le=10_000, description="Full runs per release: a first and a fix-up.")
    hyperparameter_trials: int = Field(4, ge=0, le=10_000, description="Trial runs per release (assumption).")
    trial_data_fraction: float = Field(0.25, gt=0, le=1, description="Share of the tokens one trial trains on.")

    @property
    def run_equivalents(self) -> float:
        """Full-run equivalents of GPU time in one release."""
        return self.training_runs + self.hyperparameter_trials * self.trial_data_fraction


class EvaluationPlan(BaseModel):
    """How each run is checked."""

    model_config = _FROZEN

    eval_set_size: int = Field(500, ge=0, le=10**9, description="Held-out examples, human-labelled once.")
    eval_runs_per_iteration: int = Field(1, ge=0, le=1000, description="Eval passes per run or trial.")
    cost_per_eval_run: float | None = Field(
        None, ge=0, le=1e7, description="USD per eval pass; default eval_set_size x an LLM-judge call."
    )
    regression_suite: bool = Field(True, description="Run a general-capability suite after each full run.")
    regression_gpu_hours: float = Field(
        1.0, ge=0, le=1e6, description="GPU-hours of one regression-suite pass (assumption)."
    )
    human_review_hours: float = Field(8, ge=0, le=1e6, description="Hours reading outputs per release.")
    reviewer_hourly_rate: float | None = Field(None, ge=0, le=1e5, description="Default: the annotator rate.")


class RetrainingPlan(BaseModel):
    """What makes the programme recur."""

    model_config = _FROZEN

    base_model_updates_per_year: float = Field(
        2, ge=0, le=365, description="New base-model versions adopted per year (assumption)."
    )
    data_refreshes_per_year: float = Field(4, ge=0, le=365, description="Retrains on refreshed data (quarterly).")
    runs_per_retrain: int = Field(1, ge=1, le=10_000, description="Full runs per retrain (no trials).")
    refresh_share: float = Field(0.2, ge=0, le=1, description="Share of the dataset that is new at each data refresh.")
    engineering_hours_per_retrain: float = Field(8, ge=0, le=1e6, description="People's hours per retrain.")


class EngineeringPlan(BaseModel):
    """Building the pipeline once."""

    model_config = _FROZEN

    hours: float = Field(80, ge=0, le=1e7, description="One-time hours (two engineer-weeks; assumption).")
    hourly_rate: float | None = Field(None, ge=0, le=1e5, description="Default $100/h (see data).")


class ComputePlan(BaseModel):
    """What a GPU-hour costs."""

    model_config = _FROZEN

    gpu_price_per_hour: float | None = Field(
        None, gt=0, le=1e4, description="USD per GPU-hour; default: the GPU catalog price for the tier."
    )
    price_tier: PriceTier = PriceTier.ON_DEMAND
    restart_overhead: float | None = Field(
        None, ge=0, le=10, description="Extra GPU time for restarts; default 10% on spot, 0 on demand."
    )


class RagPlan(BaseModel):
    """A retrieval set-up serving the same knowledge, for the side-by-side."""

    model_config = _FROZEN

    corpus_tokens: int | None = Field(
        None, ge=1, le=10**14, description="Tokens to index; default one epoch of the dataset."
    )
    queries_per_month: int = Field(100_000, ge=0, le=10**13, description="Queries served (assumption).")
    top_k: int = Field(5, ge=1, le=1000, description="Chunks added per query (pricing.json default 5).")
    chunk_tokens: int = Field(512, ge=1, le=10**6, description="Tokens per chunk (pricing.json default 512).")
    embedding_model: str = Field("openai text-embedding-3-small", max_length=200)
    embedding_dims: int = Field(1536, ge=1, le=65_536, description="text-embedding-3-small's dimension.")
    vector_db: str = Field("pinecone", max_length=200, description="A pricing.json rag.vector_db service.")
    vector_db_monthly_usd: float | None = Field(None, ge=0, le=1e9, description="Overrides the lookup.")
    context_price_per_1m: float | None = Field(
        None, ge=0, le=1e4, description="USD per 1M input tokens; default by model size (pricing.json)."
    )
    engineering_hours: float = Field(40, ge=0, le=1e7, description="One-time hours (assumption).")


class Programme(BaseModel):
    """Everything but the training spec. Every field has a documented default."""

    model_config = _FROZEN

    dataset: DatasetPlan = Field(default_factory=DatasetPlan)
    labelling: LabellingPlan = Field(default_factory=LabellingPlan)
    iterations: IterationPlan = Field(default_factory=IterationPlan)
    evaluation: EvaluationPlan = Field(default_factory=EvaluationPlan)
    retraining: RetrainingPlan = Field(default_factory=RetrainingPlan)
    engineering: EngineeringPlan = Field(default_factory=EngineeringPlan)
    compute: ComputePlan = Field(default_factory=ComputePlan)
    rag: RagPlan = Field(default_factory=RagPlan)
    horizon_months: int = Field(12, ge=1, le=120, description="Months the bill covers.")


class CostRequest(BaseModel):
    """A training spec, a programme and optional user prices (``pricing.json``'s shape)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    training: TrainingSpec
    programme: Programme = Field(default_factory=Programme)
    prices: dict[str, Any] | None = None


# --------------------------------------------------------------------------------------------
# Outputs


class Line(BaseModel):
    """One priced line: ``amount = quantity x unit_price``, rounded to the cent."""

    model_config = ConfigDict(frozen=True)

    name: str
    category: Category
    recurring: bool
    quantity: float
    unit: str
    unit_price: float
    amount: Money
    basis: str
    """How the quantity was derived from the inputs."""
    source: str
    """Where the unit price comes from."""
    as_of: str | None = None


class ComputeBasis(BaseModel):
    """The throughput and price behind the GPU lines."""

    model: str
    method: Method
    gpu: str
    num_gpus: int
    tokens_per_run: int
    flops_per_token: float
    tokens_per_second_per_gpu: float
    mfu: float
    calibrated: bool
    fits: bool | None
    price_tier: PriceTier
    gpu_price_per_hour: float
    price_source: str
    price_as_of: str | None
    restart_overhead: float


class Bill(BaseModel):
    """The fine-tuning programme's cost over ``horizon_months``."""

    horizon_months: int
    currency: str = "USD"
    lines: list[Line]
    one_time_total: Money
    recurring_total: Money
    total: Money
    gpu_hours_per_run: float
    wall_clock_hours_per_run: float
    wall_clock_days_per_release: float
    retrains_over_horizon: float
    gpu_compute_share: float
    """Share of ``total`` on GPU-hour lines (training and the regression suite)."""
    compute: ComputeBasis
    assumptions: list[str]


class Alternative(BaseModel):
    """Another way to close the same gap, priced over the same horizon."""

    name: str
    kind: str
    available: bool
    reason: str | None = None
    lines: list[Line] = Field(default_factory=list)
    one_time_total: Money = Decimal(0)
    recurring_total: Money = Decimal(0)
    total: Money = Decimal(0)
    notes: list[str] = Field(default_factory=list)


class CostReport(BaseModel):
    """The bill, the alternatives beside it, and the programme with every default filled in."""

    bill: Bill
    alternatives: list[Alternative]
    programme: dict[str, Any]
    spec: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Reference data


@dataclass(frozen=True)
class Quote:
    """A price or rate and where it comes from."""

    value: float
    source: str
    as_of: str | None = None


@cache
def _tco_defaults() -> dict[str, Any]:
    data: dict[str, Any] = load_json("tco_defaults.json")
    return data


def _default(key: str) -> Quote:
    d = _tco_defaults()["defaults"][key]
    return Quote(float(d["value"]), f"tco_defaults.json {key}: {d['source']} [{d['status']}]", d.get("as_of"))


def _given_or_default(given: float | None, field: str, key: str) -> Quote:
    return Quote(given, f"input programme.{field}") if given is not None else _default(key)


def _section_as_of(section: Mapping[str, Any], path: str) -> str | None:
    own = section.get("as_of")
    if isinstance(own, str):
        return own
    dated: dict[str, str] = _tco_defaults()["pricing_as_of"]
    return dated.get(path)


def merge_prices(user: Mapping[str, Any] | None) -> dict[str, Any]:
    """``pricing.json`` with a user price file of the same shape laid over it (objects merge key by
    key; any other value, lists included, is replaced)."""
    base: dict[str, Any] = load_json("pricing.json")
    return _deep_merge(base, user) if user else base


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_price_file(path: Path) -> dict[str, Any]:
    """Read a user price file (JSON, ``pricing.json``'s shape); problems raise :class:`SpecError`."""
    try:
        if path.stat().st_size > MAX_PRICE_FILE_BYTES:
            raise SpecError([Problem("prices", f"{path} is larger than {MAX_PRICE_FILE_BYTES} bytes")])
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError([Problem("prices", f"cannot read {path}: {exc.strerror or exc}")]) from exc
    except ValueError as exc:
        raise SpecError([Problem("prices", f"{path} is not valid JSON: {exc}")]) from exc
    if not isinstance(data, dict):
        raise SpecError([Problem("prices", f"{path} must hold a JSON object shaped like pricing.json")])
    return data


def _is_price(v: Any) -> TypeGuard[float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def price_problems(user: Mapping[str, Any]) -> list[Problem]:
    """Everything wrong with the parts of a user price file that the bill reads."""
    problems: list[Problem] = []

    def need(cond: bool, path: str, msg: str) -> bool:
        if not cond:
            problems.append(Problem(f"prices.{path}", msg))
        return cond

    hosted = user.get("hosted_fine_tuning", {})
    if need(isinstance(hosted, Mapping), "hosted_fine_tuning", "must be an object of providers"):
        for name, section in hosted.items():
            if not isinstance(section, Mapping):
                continue
            for key in _TIER_KEYS:
                tiers = section.get(key)
                if tiers is None or not need(
                    isinstance(tiers, list),
                    f"hosted_fine_tuning.{name}.{key}",
                    "must be a list of {size, price...} objects",
                ):
                    continue
                for i, t in enumerate(tiers):
                    p = f"hosted_fine_tuning.{name}.{key}[{i}]"
                    if need(
                        isinstance(t, Mapping) and isinstance(t.get("size"), str),
                        p,
                        "needs a 'size' such as 'up to 16B' or '17B-69B'",
                    ):
                        for k, v in t.items():
                            if k != "size" and k != "status" and not isinstance(v, str):
                                need(_is_price(v), f"{p}.{k}", "must be a price >= 0")
    rag = user.get("rag", {})
    if need(isinstance(rag, Mapping), "rag", "must be an object"):
        for key in ("embeddings_per_1m_tokens", "vector_db"):
            entries = rag.get(key)
            if entries is None or not need(isinstance(entries, list), f"rag.{key}", "must be a list"):
                continue
            for i, e in enumerate(entries):
                if not need(isinstance(e, Mapping), f"rag.{key}[{i}]", "must be an object"):
                    continue
                for k in ("price", "storage_per_gb_month"):
                    if k in e and not isinstance(e[k], list):
                        need(_is_price(e[k]), f"rag.{key}[{i}].{k}", "must be a price >= 0")
        ctx = rag.get("extra_context_tokens")
        if isinstance(ctx, Mapping):
            for k, table in ctx.items():
                if k.startswith("input_prices_per_1m") and need(
                    isinstance(table, Mapping), f"rag.extra_context_tokens.{k}", "must be an object"
                ):
                    for name, v in table.items():
                        need(_is_price(v), f"rag.extra_context_tokens.{k}.{name}", "must be a price >= 0")
    return problems


# --------------------------------------------------------------------------------------------
# Validation


def check_cost_request(data: CostRequest | Mapping[str, Any]) -> CostRequest:
    """Validate raw input ``{"training": {...}, "programme": {...}, "prices": {...}}`` and return a
    request whose GPU can be priced, or raise :class:`SpecError` listing every problem at once."""
    if isinstance(data, CostRequest):
        raw: Mapping[str, Any] = {
            "training": data.training,
            "programme": data.programme,
            "prices": data.prices,
        }
    elif isinstance(data, Mapping):
        raw = data
    else:
        raise SpecError([Problem("", "a cost request must be a JSON/YAML object")])
    problems = [Problem(str(k), "unknown field") for k in raw if k not in ("training", "programme", "prices")]

    spec: TrainingSpec | None = None
    training = raw.get("training")
    if training is None:
        problems.append(Problem("training", "give a training spec (at least model and gpu)"))
    else:
        try:
            spec = check_spec(training)
        except SpecError as exc:
            problems.extend(_prefixed("training", exc.problems))
    if spec is not None and spec.gpu is None:
        problems.append(Problem("training.gpu", "give a GPU: the bill prices GPU time"))

    programme: Programme | None = None
    try:
        p = raw.get("programme") or {}
        programme = p if isinstance(p, Programme) else Programme.model_validate(p)
    except ValidationError as exc:
        problems.extend(_prefixed("programme", _problems(exc)))

    prices = raw.get("prices")
    if prices is not None and not isinstance(prices, Mapping):
        problems.append(Problem("prices", "must be an object shaped like pricing.json"))
    elif prices is not None:
        problems.extend(price_problems(prices))

    if spec is not None and programme is not None and spec.gpu is not None:
        problems.extend(_gpu_price_problems(spec, programme))
    if problems or spec is None or programme is None:
        raise SpecError(problems)
    return CostRequest(training=spec, programme=programme, prices=dict(prices) if prices else None)


def _problems(exc: ValidationError) -> list[Problem]:
    """Pydantic errors as problems; a cross-field message 'field: text; field: text' is split."""
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        if err["type"] == "value_error":
            for part in msg.split("; "):
                field, sep, text = part.partition(": ")
                out.append(Problem(".".join(x for x in (loc, field) if x), text) if sep else Problem(loc, part))
            continue
        out.append(Problem(loc, msg))
    return out


def _prefixed(prefix: str, problems: list[Problem]) -> list[Problem]:
    return [Problem(f"{prefix}.{p.field}" if p.field else prefix, p.message) for p in problems]


def _gpu_price_problems(spec: TrainingSpec, programme: Programme) -> list[Problem]:
    gpu = find_gpu(spec.gpu or "")
    if gpu is None or programme.compute.gpu_price_per_hour is not None:
        return []
    key = _TIER_PRICE_KEY[programme.compute.price_tier]
    if key not in gpu.price_usd_per_hour:
        return [
            Problem(
                "programme.compute.gpu_price_per_hour",
                f"the catalog has no {programme.compute.price_tier.value} price for {gpu.id}; give one",
            )
        ]
    return []


# --------------------------------------------------------------------------------------------
# The bill


_TIER_PRICE_KEY = {PriceTier.ON_DEMAND: "typical", PriceTier.SPOT: "low"}


@dataclass(frozen=True)
class _Rates:
    """Every priced default resolved: an input where given, the data file where not."""

    gpu: Quote
    restart_overhead: Quote
    label: Quote
    review_overhead: Quote
    synthetic: Quote
    eval_run: Quote
    reviewer: Quote
    engineer: Quote


def _rates(p: Programme, gpu: GPU) -> _Rates:
    lab, ev, comp = p.labelling, p.evaluation, p.compute
    if comp.gpu_price_per_hour is not None:
        gpu_q = Quote(comp.gpu_price_per_hour, "input programme.compute.gpu_price_per_hour")
    else:
        key = _TIER_PRICE_KEY[comp.price_tier]
        gpu_q = Quote(
            gpu.price_usd_per_hour[key],
            f"gpus.json {gpu.id} '{key}' price ({comp.price_tier.value}); sources: "
            + "; ".join(gpu.price_sources[:2])
            + (f" (+{len(gpu.price_sources) - 2} more)" if len(gpu.price_sources) > 2 else ""),
            gpu.price_as_of or None,
        )
    if comp.restart_overhead is not None:
        restart = Quote(comp.restart_overhead, "input programme.compute.restart_overhead")
    elif comp.price_tier is PriceTier.SPOT:
        restart = _default("spot_restart_overhead")
    else:
        restart = Quote(0.0, "on-demand capacity: no restarts assumed")

    if lab.cost_per_labelled_example is not None:
        label = Quote(lab.cost_per_labelled_example, "input programme.labelling.cost_per_labelled_example")
    else:
        rate = _given_or_default(lab.annotator_hourly_rate, "labelling.annotator_hourly_rate", "annotator_hourly_rate")
        minutes = _given_or_default(lab.minutes_per_example, "labelling.minutes_per_example", "minutes_per_example")
        label = Quote(
            rate.value * minutes.value / 60,
            f"annotator ${rate.value:g}/h x {minutes.value:g} min/example; rate: {rate.source}; "
            f"minutes: {minutes.source}",
            rate.as_of,
        )
    annotator = _given_or_default(lab.annotator_hourly_rate, "labelling.annotator_hourly_rate", "annotator_hourly_rate")
    if ev.cost_per_eval_run is not None:
        eval_run = Quote(ev.cost_per_eval_run, "input programme.evaluation.cost_per_eval_run")
    else:
        judge = _default("judge_cost_per_eval_example")
        eval_run = Quote(
            ev.eval_set_size * judge.value,
            f"{ev.eval_set_size:,} eval examples x ${judge.value:g} per LLM-judge call; {judge.source}",
            judge.as_of,
        )
    return _Rates(
        gpu=gpu_q,
        restart_overhead=restart,
        label=label,
        review_overhead=_given_or_default(lab.review_overhead, "labelling.review_overhead", "review_overhead"),
        synthetic=_given_or_default(
            lab.synthetic_cost_per_example,
            "labelling.synthetic_cost_per_example",
            "synthetic_cost_per_example",
        ),
        eval_run=eval_run,
        reviewer=Quote(ev.reviewer_hourly_rate, "input programme.evaluation.reviewer_hourly_rate")
        if ev.reviewer_hourly_rate is not None
        else annotator,
        engineer=_given_or_default(p.engineering.hourly_rate, "engineering.hourly_rate", "engineer_hourly_rate"),
    )


def _money(x: float) -> Decimal:
    return Decimal(repr(float(x))).quantize(_CENT, rounding=ROUND_HALF_UP)


def _line(
    name: str, category: Category, *, recurring: bool, quantity: float, unit: str, price: Quote, basis: str
) -> Line:
    return Line(
        name=name,
        category=category,
        recurring=recurring,
        quantity=quantity,
        unit=unit,
        unit_price=price.value,
        amount=_money(quantity * price.value),
        basis=basis,
        source=price.source,
        as_of=price.as_of,
    )


def _total(lines: list[Line], recurring: bool | None = None) -> Decimal:
    return sum((ln.amount for ln in lines if recurring is None or ln.recurring is recurring), Decimal(0))


def _bill(req: CostRequest, est: Estimate, gpu: GPU) -> Bill:
    spec, p = req.training, req.programme
    ds, it, ev, rt = p.dataset, p.iterations, p.evaluation, p.retraining
    rates = _rates(p, gpu)
    tps = est.throughput.tokens_per_second
    tokens = ds.tokens_per_run
    gpu_hours = tokens / tps / 3600  # GPU-hours: tokens/s is per GPU
    wall_hours = gpu_hours / spec.num_gpus
    over = 1 + rates.restart_overhead.value
    tp_basis = (
        f"{tokens:,} tokens ({ds.examples:,} examples x {ds.tokens_per_example:,} tokens x {ds.epochs:g} "
        f"epochs) / {tps:,.0f} tokens/s per GPU / 3600 = {gpu_hours:,.2f} GPU-h per run"
        + ("" if est.throughput.calibrated else f" (uncalibrated MFU {est.throughput.mfu:.0%})")
        + (f", x {over:g} restart overhead" if over != 1 else "")
    )
    retrains = (rt.base_model_updates_per_year + rt.data_refreshes_per_year) * p.horizon_months / 12
    refreshes = rt.data_refreshes_per_year * p.horizon_months / 12
    retrain_runs = retrains * rt.runs_per_retrain
    cadence = (
        f"({rt.base_model_updates_per_year:g} base-model updates + {rt.data_refreshes_per_year:g} data "
        f"refreshes per year) x {p.horizon_months} months / 12 = {retrains:g} retrains"
    )
    labelled = ds.examples * p.labelling.human_share
    refresh_labelled = refreshes * rt.refresh_share * labelled
    eval_runs = (it.training_runs + it.hyperparameter_trials) * ev.eval_runs_per_iteration
    reg_hours = ev.regression_gpu_hours if ev.regression_suite else 0.0
    C, L, E, G = Category.COMPUTE, Category.LABELLING, Category.EVALUATION, Category.ENGINEERING

    lines = [
        _line(
            "training runs",
            C,
            recurring=False,
            quantity=gpu_hours * it.training_runs * over,
            unit=GPU_HOUR,
            price=rates.gpu,
            basis=f"{it.training_runs} full runs x {tp_basis}",
        ),
        _line(
            "hyperparameter trials",
            C,
            recurring=False,
            quantity=gpu_hours * it.hyperparameter_trials * it.trial_data_fraction * over,
            unit=GPU_HOUR,
            price=rates.gpu,
            basis=f"{it.hyperparameter_trials} trials x {it.trial_data_fraction:g} of the "
            f"tokens x {gpu_hours:,.2f} GPU-h per run",
        ),
        _line(
            "human labelling",
            L,
            recurring=False,
            quantity=labelled + ev.eval_set_size,
            unit="example",
            price=rates.label,
            basis=f"{ds.examples:,} examples x {p.labelling.human_share:g} human share "
            f"+ {ev.eval_set_size:,} eval-set examples",
        ),
        _line(
            "label review and rework",
            L,
            recurring=False,
            quantity=(labelled + ev.eval_set_size) * rates.review_overhead.value,
            unit="example",
            price=rates.label,
            basis=f"{rates.review_overhead.value:g} of the labelled examples ({rates.review_overhead.source})",
        ),
        _line(
            "synthetic data",
            L,
            recurring=False,
            quantity=ds.examples * p.labelling.synthetic_share,
            unit="example",
            price=rates.synthetic,
            basis=f"{ds.examples:,} examples x {p.labelling.synthetic_share:g} synthetic share",
        ),
        _line(
            "evaluation runs",
            E,
            recurring=False,
            quantity=eval_runs,
            unit="eval run",
            price=rates.eval_run,
            basis=f"({it.training_runs} runs + {it.hyperparameter_trials} trials) x "
            f"{ev.eval_runs_per_iteration} eval passes",
        ),
        _line(
            "regression suite",
            E,
            recurring=False,
            quantity=reg_hours * it.training_runs,
            unit=GPU_HOUR,
            price=rates.gpu,
            basis=f"{it.training_runs} full runs x {reg_hours:g} GPU-h per pass",
        ),
        _line(
            "human review of outputs",
            E,
            recurring=False,
            quantity=ev.human_review_hours,
            unit="hour",
            price=rates.reviewer,
            basis="programme.evaluation.human_review_hours per release",
        ),
        _line(
            "engineering",
            G,
            recurring=False,
            quantity=p.engineering.hours,
            unit="hour",
            price=rates.engineer,
            basis="programme.engineering.hours, one-time",
        ),
        _line(
            "retraining compute",
            C,
            recurring=True,
            quantity=retrain_runs * gpu_hours * over,
            unit=GPU_HOUR,
            price=rates.gpu,
            basis=f"{cadence} x {rt.runs_per_retrain} runs x {gpu_hours:,.2f} GPU-h"
            + (f" x {over:g} restart overhead" if over != 1 else ""),
        ),
        _line(
            "retraining evaluation",
            E,
            recurring=True,
            quantity=retrain_runs * ev.eval_runs_per_iteration,
            unit="eval run",
            price=rates.eval_run,
            basis=f"{cadence} x {rt.runs_per_retrain} runs x {ev.eval_runs_per_iteration} eval passes",
        ),
        _line(
            "retraining regression suite",
            E,
            recurring=True,
            quantity=retrain_runs * reg_hours,
            unit=GPU_HOUR,
            price=rates.gpu,
            basis=f"{cadence} x {rt.runs_per_retrain} runs x {reg_hours:g} GPU-h",
        ),
        _line(
            "retraining human review",
            E,
            recurring=True,
            quantity=retrains * ev.human_review_hours,
            unit="hour",
            price=rates.reviewer,
            basis=f"{cadence} x {ev.human_review_hours:g} hours",
        ),
        _line(
            "refresh labelling",
            L,
            recurring=True,
            quantity=refresh_labelled * (1 + rates.review_overhead.value),
            unit="example",
            price=rates.label,
            basis=f"{refreshes:g} data refreshes x {rt.refresh_share:g} new x {labelled:,.0f} human-labelled "
            f"examples x (1 + {rates.review_overhead.value:g} review)",
        ),
        _line(
            "retraining engineering",
            G,
            recurring=True,
            quantity=retrains * rt.engineering_hours_per_retrain,
            unit="hour",
            price=rates.engineer,
            basis=f"{cadence} x {rt.engineering_hours_per_retrain:g} hours",
        ),
    ]

    total = _total(lines)
    gpu_amount = sum((ln.amount for ln in lines if ln.unit == GPU_HOUR), Decimal(0))
    return Bill(
        horizon_months=p.horizon_months,
        lines=lines,
        one_time_total=_total(lines, recurring=False),
        recurring_total=_total(lines, recurring=True),
        total=total,
        gpu_hours_per_run=gpu_hours,
        wall_clock_hours_per_run=wall_hours * over,
        wall_clock_days_per_release=wall_hours * over * it.run_equivalents / 24,
        retrains_over_horizon=retrains,
        gpu_compute_share=float(gpu_amount / total) if total else 0.0,
        compute=ComputeBasis(
            model=spec.model if isinstance(spec.model, str) else "inline model",
            method=spec.method,
            gpu=gpu.id,
            num_gpus=spec.num_gpus,
            tokens_per_run=tokens,
            flops_per_token=est.throughput.flops_per_token,
            tokens_per_second_per_gpu=tps,
            mfu=est.throughput.mfu,
            calibrated=est.throughput.calibrated,
            fits=est.fits,
            price_tier=p.compute.price_tier,
            gpu_price_per_hour=rates.gpu.value,
            price_source=rates.gpu.source,
            price_as_of=rates.gpu.as_of,
            restart_overhead=rates.restart_overhead.value,
        ),
        assumptions=_assumptions(est, spec),
    )


def _assumptions(est: Estimate, spec: TrainingSpec) -> list[str]:
    out = []
    if not est.throughput.calibrated:
        out.append(
            f"GPU hours use an uncalibrated efficiency (MFU {est.throughput.mfu:.0%}, the default for "
            f"{spec.method.value}); calibrate on this GPU before trusting them beyond a factor of ~2"
        )
    if est.fits is False:
        out.append(
            f"this configuration does not fit on {spec.gpu} ({est.headroom_bytes:,} bytes headroom); "
            "the GPU hours assume a variant that fits at the same speed"
        )
    if spec.num_gpus > 1:
        out.append(f"{spec.num_gpus} GPUs scale ideally (communication time left out)")
    out += [
        "retrains are the expected count (cadence x horizon), not rounded to whole runs",
        "serving the fine-tuned model is not included (neither hosting nor per-token inference)",
        "wall-clock time counts GPU time only (labelling and review calendar time left out)",
    ]
    return out


# --------------------------------------------------------------------------------------------
# Alternatives


_TIER_KEYS = ("per_1m_tokens", "training_per_1m_tokens")
_UP_TO = re.compile(r"\s*up to\s*(\d+(?:\.\d+)?)\s*b\s*", re.IGNORECASE)
_RANGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*b?\s*-\s*(\d+(?:\.\d+)?)\s*b\s*", re.IGNORECASE)


def size_tier_upper_bound(size: str) -> float | None:
    """The upper bound, in billions of parameters, of a size tier ('up to 16B' -> 16, '17B-69B' -> 69);
    None for tiers that name a model instead ('Mixtral 8x7B')."""
    if m := _UP_TO.fullmatch(size):
        return float(m.group(1))
    if m := _RANGE.fullmatch(size):
        return float(m.group(2))
    return None


def _size_tiers(section: Mapping[str, Any]) -> tuple[str, list[tuple[float, Mapping[str, Any]]]]:
    """A provider's per-size tier list (its key, and (upper bound in B, tier) in ascending order).
    Empty for providers that price named models only (OpenAI, Vertex, Mistral): they cannot train
    an open-weight model."""
    for key in _TIER_KEYS:
        tiers = section.get(key)
        if isinstance(tiers, list):
            bounded = [
                (b, t)
                for t in tiers
                if isinstance(t, Mapping)
                if (b := size_tier_upper_bound(str(t.get("size", "")))) is not None
            ]
            if bounded:
                return key, sorted(bounded, key=lambda x: x[0])
    return "", []


def _hosted_quote(section: Mapping[str, Any], path: str, method: Method, params_b: float) -> Quote | str:
    """The price per 1M training tokens for a model of ``params_b`` billion (total) parameters, or why
    there is none. Tiers are matched by total parameters (Together prices MoE models by total);
    QLoRA is billed as LoRA."""
    price_keys = ("sft_full", "price") if method is Method.FULL else ("sft_lora", "price")
    key, tiers = _size_tiers(section)
    for bound, tier in tiers:
        if params_b <= bound:
            for pk in price_keys:
                price = tier.get(pk)
                if _is_price(price):
                    status = tier.get("status", section.get("status"))
                    src = f"pricing.json {path}.{key} '{tier['size']}' {pk}: {section.get('source', '')}"
                    return Quote(float(price), src + (f" [{status}]" if status else ""), _section_as_of(section, path))
            return f"no {' or '.join(price_keys)} price in the '{tier['size']}' tier"
    return f"no size tier covers {params_b:,.1f}B parameters (largest: {tiers[-1][1]['size']})"


def _hosted(req: CostRequest, bill: Bill, prices: Mapping[str, Any], params_b: float) -> list[Alternative]:
    p = req.programme
    it, rt = p.iterations, p.retraining
    per_run_m = bill.compute.tokens_per_run / 1e6
    kept = [ln for ln in bill.lines if ln.category is not Category.COMPUTE]
    out = []
    providers = prices.get("hosted_fine_tuning", {})
    for name, section in providers.items() if isinstance(providers, Mapping) else ():
        if not isinstance(section, Mapping) or not _size_tiers(section)[1]:
            continue
        path = f"hosted_fine_tuning.{name}"
        quote = _hosted_quote(section, path, req.training.method, params_b)
        alt_name = f"hosted fine-tuning ({name})"
        if isinstance(quote, str):
            out.append(Alternative(name=alt_name, kind="hosted_fine_tuning", available=False, reason=quote))
            continue
        H = Category.HOSTED_TRAINING
        unit = "1M training tokens"
        lines = [
            _line(
                "hosted training runs",
                H,
                recurring=False,
                quantity=per_run_m * it.training_runs,
                unit=unit,
                price=quote,
                basis=f"{it.training_runs} runs x {per_run_m:g}M tokens",
            ),
            _line(
                "hosted hyperparameter trials",
                H,
                recurring=False,
                quantity=per_run_m * it.hyperparameter_trials * it.trial_data_fraction,
                unit=unit,
                price=quote,
                basis=f"{it.hyperparameter_trials} trials x {it.trial_data_fraction:g} x {per_run_m:g}M tokens",
            ),
            _line(
                "hosted retraining",
                H,
                recurring=True,
                quantity=bill.retrains_over_horizon * rt.runs_per_retrain * per_run_m,
                unit=unit,
                price=quote,
                basis=f"{bill.retrains_over_horizon:g} retrains x {rt.runs_per_retrain} runs x {per_run_m:g}M tokens",
            ),
            *kept,
        ]
        out.append(
            _alternative(
                alt_name,
                "hosted_fine_tuning",
                lines,
                notes=[
                    "replaces the GPU training lines; the labelling, evaluation and engineering lines are the bill's",
                    "validation tokens and minimum charges left out; serving the tuned model left out "
                    "(dedicated endpoints bill per minute)",
                ],
            )
        )
    return out


def _alternative(name: str, kind: str, lines: list[Line], notes: list[str]) -> Alternative:
    return Alternative(
        name=name,
        kind=kind,
        available=True,
        lines=lines,
        one_time_total=_total(lines, recurring=False),
        recurring_total=_total(lines, recurring=True),
        total=_total(lines),
        notes=notes,
    )


def _find_entry(entries: Any, key: str, wanted: str) -> Mapping[str, Any] | None:
    if not isinstance(entries, list):
        return None
    w = wanted.strip().lower()
    named = [e for e in entries if isinstance(e, Mapping) and isinstance(e.get(key), str)]
    for e in named:
        if e[key].lower() == w:
            return e
    return next((e for e in named if w in e[key].lower()), None)


def _rag(req: CostRequest, bill: Bill, prices: Mapping[str, Any], params_b: float) -> Alternative:
    p = req.programme
    r, rt = p.rag, p.retraining
    name = "retrieval (RAG)"
    rag = prices.get("rag", {})
    corpus = r.corpus_tokens or p.dataset.examples * p.dataset.tokens_per_example
    corpus_basis = "programme.rag.corpus_tokens" if r.corpus_tokens else "one epoch of the dataset"

    emb = _find_entry(rag.get("embeddings_per_1m_tokens"), "model", r.embedding_model)
    if emb is None or not _is_price(emb.get("price")):
        return Alternative(
            name=name,
            kind="rag",
            available=False,
            reason=f"no single price for embedding model {r.embedding_model!r} in "
            "pricing.json rag.embeddings_per_1m_tokens",
        )
    emb_q = Quote(
        float(emb["price"]),
        f"pricing.json rag.embeddings_per_1m_tokens '{emb['model']}': "
        f"{emb.get('src', 'OpenAI pricing (multiple repos)')} [{emb.get('status', '')}]",
        _section_as_of(emb, "rag.embeddings_per_1m_tokens"),
    )

    n_vectors = math.ceil(corpus / r.chunk_tokens)
    store_bytes = n_vectors * r.embedding_dims * 4 * 1.5  # float32, HNSW graph ~1.5x (pricing.json rule)
    store_basis = f"{n_vectors:,} vectors x {r.embedding_dims} dims x 4 bytes x 1.5 HNSW = {store_bytes / 1e9:.3f} GB"
    if r.vector_db_monthly_usd is not None:
        store_q = Quote(r.vector_db_monthly_usd, "input programme.rag.vector_db_monthly_usd")
    else:
        db = _find_entry(rag.get("vector_db"), "service", r.vector_db)
        if db is None or not _is_price(db.get("storage_per_gb_month")):
            return Alternative(
                name=name,
                kind="rag",
                available=False,
                reason=f"no per-GB price for vector DB {r.vector_db!r} in pricing.json "
                "rag.vector_db; give programme.rag.vector_db_monthly_usd",
            )
        per_gb = float(db["storage_per_gb_month"])
        minimum = float(db["monthly_minimum"]) if _is_price(db.get("monthly_minimum")) else 0.0
        monthly = max(minimum, store_bytes / 1e9 * per_gb)
        store_q = Quote(
            monthly,
            f"pricing.json rag.vector_db '{db['service']}': max(${minimum:g} minimum, GB x "
            f"${per_gb:g}/GB-month); read units left out; {db.get('src', '')}",
            _section_as_of(db, "rag.vector_db"),
        )

    if r.context_price_per_1m is not None:
        ctx_q = Quote(r.context_price_per_1m, "input programme.rag.context_price_per_1m")
    else:
        ctx = rag.get("extra_context_tokens", {})
        tables = [v for k, v in ctx.items() if k.startswith("input_prices_per_1m") and isinstance(v, Mapping)]
        key = "fireworks/together <=16B open model" if params_b <= 16 else "41-80B open model"
        price = tables[0].get(key) if tables else None
        if not _is_price(price):
            return Alternative(
                name=name,
                kind="rag",
                available=False,
                reason=f"no input-token price '{key}' in pricing.json rag.extra_context_tokens; "
                "give programme.rag.context_price_per_1m",
            )
        ctx_q = Quote(
            float(price),
            f"pricing.json rag.extra_context_tokens '{key}' (chosen by model size "
            f"{params_b:,.1f}B): {ctx.get('src', '')}",
            _section_as_of(ctx, "rag.extra_context_tokens"),
        )
    refreshes = rt.data_refreshes_per_year * p.horizon_months / 12
    per_query = r.top_k * r.chunk_tokens
    R = Category.RETRIEVAL
    shared = [ln for ln in bill.lines if ln.name == "human labelling"]
    eval_labels = [
        _line(
            "eval set labelling",
            Category.LABELLING,
            recurring=False,
            quantity=p.evaluation.eval_set_size,
            unit="example",
            price=Quote(ln.unit_price, ln.source, ln.as_of),
            basis="the fine-tuning bill's eval set, which retrieval needs as much",
        )
        for ln in shared
    ]
    lines = [
        _line(
            "corpus embedding",
            R,
            recurring=False,
            quantity=corpus / 1e6,
            unit="1M tokens",
            price=emb_q,
            basis=f"{corpus:,} corpus tokens ({corpus_basis})",
        ),
        _line(
            "retrieval engineering",
            Category.ENGINEERING,
            recurring=False,
            quantity=r.engineering_hours,
            unit="hour",
            price=_given_or_default(p.engineering.hourly_rate, "engineering.hourly_rate", "engineer_hourly_rate"),
            basis="programme.rag.engineering_hours, one-time",
        ),
        *eval_labels,
        _line(
            "re-embedding on refresh",
            R,
            recurring=True,
            quantity=refreshes * rt.refresh_share * corpus / 1e6,
            unit="1M tokens",
            price=emb_q,
            basis=f"{refreshes:g} data refreshes x {rt.refresh_share:g} of {corpus:,} tokens",
        ),
        _line(
            "vector store",
            R,
            recurring=True,
            quantity=p.horizon_months,
            unit="month",
            price=store_q,
            basis=store_basis,
        ),
        _line(
            "extra context tokens",
            R,
            recurring=True,
            quantity=r.queries_per_month * p.horizon_months * per_query / 1e6,
            unit="1M input tokens",
            price=ctx_q,
            basis=f"{r.queries_per_month:,} queries/month x {p.horizon_months} months x "
            f"{r.top_k} chunks x {r.chunk_tokens} tokens",
        ),
    ]
    return _alternative(
        name,
        "rag",
        lines,
        notes=[
            "fits changing or proprietary knowledge; does not teach format, tone or skills",
            "re-ranking, vector-DB read units and serving the base model left out",
        ],
    )


# --------------------------------------------------------------------------------------------
# Public entry point


def tco(request: CostRequest | Mapping[str, Any]) -> CostReport:
    """The bill of a fine-tuning programme and its alternatives (hosted fine-tuning, retrieval).

    ``request`` is a :class:`CostRequest` or its raw form ``{"training": {TrainingSpec fields},
    "programme": {...}, "prices": {...}}``; bad input raises :class:`SpecError` with every problem.
    """
    req = check_cost_request(request)
    spec = req.training
    gpu = find_gpu(spec.gpu or "")
    if gpu is None:  # check_cost_request guarantees a known GPU
        raise SpecError([Problem("training.gpu", f"unknown GPU {spec.gpu!r}")])
    est = estimate(spec)
    if est.throughput.tokens_per_second <= 0:
        raise SpecError([Problem("training.gpu", f"the catalog has no peak rate for {gpu.id}")])
    bill = _bill(req, est, gpu)
    prices = merge_prices(req.prices)
    params_b = est.params.total / 1e9
    alternatives = [*_hosted(req, bill, prices, params_b), _rag(req, bill, prices, params_b)]
    return CostReport(
        bill=bill,
        alternatives=alternatives,
        programme=req.programme.model_dump(mode="json"),
        spec=spec.to_json(),
    )
