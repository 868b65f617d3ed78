"""The GPU catalog: ids, memory as the card reports it, usable memory, peak rates, prices.

Facts come from ``data/gpus.json`` (vendor datasheets, public nvidia-smi logs and price pages,
compiled 2026-11; each entry keeps its sources). Ids follow SPEC.md: lower-case
``<model>-<form>-<memory>``; common spellings ("4090", "A100 80GB", "H100") resolve to them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from estimator._data import load_json

MIB = 1 << 20
GIB = 1 << 30

# Catalog name -> SPEC.md id. The order is the catalog's order.
_IDS: dict[str, str] = {
    "NVIDIA B200": "b200",
    "NVIDIA H200 SXM": "h200-sxm-141gb",
    "NVIDIA H200 NVL": "h200-nvl-141gb",
    "NVIDIA H100 SXM": "h100-sxm-80gb",
    "NVIDIA H100 PCIe": "h100-pcie-80gb",
    "NVIDIA H100 NVL": "h100-nvl-94gb",
    "NVIDIA A100 80GB SXM": "a100-sxm-80gb",
    "NVIDIA A100 80GB PCIe": "a100-pcie-80gb",
    "NVIDIA A100 40GB SXM": "a100-sxm-40gb",
    "NVIDIA A100 40GB PCIe": "a100-pcie-40gb",
    "NVIDIA L40S": "l40s",
    "NVIDIA L40": "l40",
    "NVIDIA L4": "l4",
    "NVIDIA A10G": "a10g",
    "NVIDIA A10": "a10",
    "NVIDIA RTX A6000": "rtx-a6000",
    "NVIDIA RTX 6000 Ada": "rtx-6000-ada",
    "NVIDIA GeForce RTX 5090": "rtx-5090",
    "NVIDIA GeForce RTX 4090": "rtx-4090",
    "NVIDIA GeForce RTX 3090": "rtx-3090",
    "NVIDIA T4": "t4",
    "NVIDIA V100 SXM2 32GB": "v100-sxm2-32gb",
    "NVIDIA V100 SXM2 16GB": "v100-sxm2-16gb",
    "AMD Instinct MI300X": "mi300x",
    "AMD Instinct MI325X": "mi325x",
}

# Spellings people use for the default variant of a model name.
_ALIASES: dict[str, str] = {
    "h200": "h200-sxm-141gb",
    "h100": "h100-sxm-80gb",
    "h100sxm": "h100-sxm-80gb",
    "h100pcie": "h100-pcie-80gb",
    "h100nvl": "h100-nvl-94gb",
    "a100": "a100-sxm-80gb",
    "a10080gb": "a100-sxm-80gb",
    "a10040gb": "a100-sxm-40gb",
    "a100sxm": "a100-sxm-80gb",
    "a100pcie": "a100-pcie-80gb",
    "4090": "rtx-4090",
    "3090": "rtx-3090",
    "5090": "rtx-5090",
    "a6000": "rtx-a6000",
    "6000ada": "rtx-6000-ada",
    "rtx6000ada": "rtx-6000-ada",
    "v100": "v100-sxm2-32gb",
    "v10032gb": "v100-sxm2-32gb",
    "v10016gb": "v100-sxm2-16gb",
}

# Where the catalog has no cudaMemGetInfo total, usable = nvidia-smi total minus this gap: the
# median of (nvidia-smi total - torch total_memory) over the cards that have both in gpus.json
# (H100 469, A100-40 424, L40S 479, A10G 441, T4 265 MiB; the 4090's 1 MiB is a driver outlier).
_DRIVER_RESERVE_MIB = 441


@dataclass(frozen=True)
class GPU:
    """One GPU model. Memory in bytes; rates in FLOP/s; prices in USD per GPU-hour."""

    id: str
    name: str
    vendor: str
    memory_bytes: int
    """Total memory as the card reports it (nvidia-smi ``memory.total``)."""
    usable_bytes: int
    """What one process can allocate: torch ``total_memory`` (cudaMemGetInfo) where known."""
    usable_source: str
    bf16_flops: float | None
    fp16_flops: float | None
    fp32_flops: float | None
    bf16_supported: bool
    bandwidth_bytes_per_s: float
    price_usd_per_hour: dict[str, float]
    price_as_of: str
    price_sources: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "vendor": self.vendor,
            "memory_bytes": self.memory_bytes,
            "usable_bytes": self.usable_bytes,
            "usable_source": self.usable_source,
            "bf16_tflops": None if self.bf16_flops is None else self.bf16_flops / 1e12,
            "bf16_supported": self.bf16_supported,
            "price_usd_per_hour": self.price_usd_per_hour,
            "price_as_of": self.price_as_of,
        }


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower().replace("geforce", "").replace("nvidia", ""))


@cache
def gpu_catalog() -> dict[str, GPU]:
    """All GPUs by id, in catalog order."""
    out: dict[str, GPU] = {}
    for g in load_json("gpus.json")["gpus"]:
        gid = _IDS.get(g["name"])
        if gid is None:
            continue
        smi = g.get("nvidia_smi_total_mib")
        torch_total = g.get("torch_total_memory_mib")
        gib = g.get("memory_gib_reported")
        if smi:
            memory = int(smi) * MIB
        elif gib:
            memory = round(float(gib) * GIB)
        else:
            memory = int(g["memory_gb"]) * GIB  # HBM stacks are sold in GiB
        if torch_total:
            usable, src = int(torch_total) * MIB, "torch total_memory from a public log"
        else:
            usable = memory - _DRIVER_RESERVE_MIB * MIB
            src = f"reported total minus the median driver reserve ({_DRIVER_RESERVE_MIB} MiB)"
        price = g.get("price_usd_per_hour") or {}
        out[gid] = GPU(
            id=gid,
            name=g["name"],
            vendor=g.get("vendor", ""),
            memory_bytes=memory,
            usable_bytes=usable,
            usable_source=src,
            bf16_flops=_tflops(g.get("bf16_dense_tflops")),
            fp16_flops=_tflops(g.get("fp16_dense_tflops")),
            fp32_flops=_tflops(g.get("fp32_tflops")),
            bf16_supported=bool(g.get("bf16_supported", True)),
            bandwidth_bytes_per_s=float(g.get("bandwidth_gbps") or 0) * 1e9,
            price_usd_per_hour={k: float(price[k]) for k in ("low", "typical", "high") if k in price},
            price_as_of=str(price.get("as_of", "")),
            price_sources=tuple(price.get("sources", ())),
        )
    return out


def _tflops(v: Any) -> float | None:
    return None if v is None else float(v) * 1e12


@cache
def _lookup() -> dict[str, str]:
    table: dict[str, str] = {}
    for gid, g in gpu_catalog().items():
        table[_norm(gid)] = gid
        table[_norm(g.name)] = gid
    for alias, gid in _ALIASES.items():
        table[_norm(alias)] = gid
    return table


def find_gpu(name: str) -> GPU | None:
    """The GPU for an id or a common spelling, or None."""
    gid = _lookup().get(_norm(name))
    if gid is None:
        # "RTX 4090 24GB", "A100-SXM4-40GB": try without the form digits, then without the memory.
        lowered = name.lower().replace("sxm4", "sxm").replace("sxm5", "sxm")
        gid = _lookup().get(_norm(lowered)) or _lookup().get(_norm(re.sub(r"\b\d+\s*gb\b", "", lowered)))
    return None if gid is None else gpu_catalog()[gid]


def gpu_ids() -> list[str]:
    """Every catalog id, in catalog order."""
    return list(gpu_catalog())
