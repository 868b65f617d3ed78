"""Load benchmark of POST /v1/estimates over loopback (bounded in requests and time).

    python benchmarks/load.py [--requests 20000] [--seconds 20] [--connections 8] [--distinct 16]

Starts the service with uvicorn in its own process on 127.0.0.1 (a free port), then a separate client
process drives ``--connections`` keep-alive HTTP/1.1 connections (a minimal asyncio client, so the
client spends little of the machine's CPU), cycling through ``--distinct`` specs. Prints requests/s,
p50/p90/p99 latency and the error count (any non-200 or broken connection). Target on a 2-core
machine: >= 1,000 requests/s with p99 <= 25 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent

MODELS = ["meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-7B", "mistralai/Mistral-7B-v0.3", "Qwen/Qwen3-4B"]
GPUS = ["rtx-4090", "h100-sxm-80gb", "a100-sxm-80gb", "l40s"]


def specs(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        spec: dict[str, Any] = {
            "model": MODELS[i % len(MODELS)],
            "method": ("qlora", "lora")[i % 2],
            "gpu": GPUS[(i // 2) % len(GPUS)],
            "batch_size": 1 + i % 8,
            "seq_len": 1024 * (1 + i % 4),
        }
        out.append(json.dumps(spec).encode())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.api.app:create_app", "--host", HOST,
           "--port", str(port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    for mod, flag in (("uvloop", ["--loop", "uvloop"]), ("httptools", ["--http", "httptools"])):
        try:
            __import__(mod)
            cmd += flag
        except ImportError:
            pass
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the service did not start within 30 s")


async def _connection(port: int, bodies: list[bytes], offset: int, quota: list[int], deadline: float,
                      lat: list[float], errors: list[int]) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(HOST, port)
    head = f"POST /v1/estimates HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
    i = offset
    try:
        while quota[0] > 0 and time.perf_counter() < deadline:
            quota[0] -= 1
            body = bodies[i % len(bodies)]
            i += 1
            t0 = time.perf_counter()
            writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status_line = await reader.readuntil(b"\r\n")
            headers = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in headers.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if status_line.split(b" ", 2)[1] != b"200":
                errors[0] += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        errors[0] += 1
    finally:
        writer.close()


async def _drive(port: int, n: int, seconds: float, conns: int, distinct: int) -> dict[str, Any]:
    bodies = specs(distinct)
    quota, lat, errors = [n], [], [0]
    t0 = time.perf_counter()
    await asyncio.gather(*(_connection(port, bodies, k, quota, t0 + seconds, lat, errors) for k in range(conns)))
    wall = time.perf_counter() - t0
    lat.sort()
    return {"requests": len(lat), "seconds": wall, "latencies": lat, "errors": errors[0]}


def client(port: int, n: int, seconds: float, conns: int, distinct: int, out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    warm = asyncio.run(_drive(port, min(500, n), seconds, conns, distinct))  # fill caches, warm the JIT-less path
    res = asyncio.run(_drive(port, n, seconds, conns, distinct))
    res["warmup_errors"] = warm["errors"]
    out.put(res)


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000, help="Requests to send (after 500 warm-up).")
    ap.add_argument("--seconds", type=float, default=20.0, help="Stop after this long, whatever is left.")
    ap.add_argument("--connections", type=int, default=8, help="Concurrent keep-alive connections.")
    ap.add_argument("--distinct", type=int, default=16, help="Distinct specs cycled through.")
    args = ap.parse_args()
    if args.requests < 1 or args.requests > 1_000_000 or not 0 < args.seconds <= 300:
        ap.error("--requests must be 1..1,000,000 and --seconds 0..300")
    port = free_port()
    server = start_server(port)
    try:
        queue: Any = mp.get_context("spawn").Queue()
        proc = mp.get_context("spawn").Process(
            target=client, args=(port, args.requests, args.seconds, args.connections, args.distinct, queue)
        )
        proc.start()
        res = queue.get(timeout=args.seconds * 2 + 60)
        proc.join(10)
    finally:
        server.terminate()
        server.wait(10)
    lat = res["latencies"]
    rps = res["requests"] / res["seconds"] if res["seconds"] > 0 else 0.0
    conf = f"{args.connections} connections, {args.distinct} distinct specs, cpus={os.cpu_count()}"
    print(f"POST /v1/estimates  {conf}")
    print(f"requests: {res['requests']}  in {res['seconds']:.2f} s  ->  {rps:,.0f} req/s")
    print(
        f"latency ms: p50 {pct(lat, 50) * 1e3:.2f}  p90 {pct(lat, 90) * 1e3:.2f}  "
        f"p99 {pct(lat, 99) * 1e3:.2f}  max {(lat[-1] if lat else float('nan')) * 1e3:.2f}"
        f"  mean {statistics.fmean(lat) * 1e3 if lat else float('nan'):.2f}"
    )
    print(f"errors: {res['errors']} (warm-up errors: {res['warmup_errors']})")
    ok = rps >= 1000 and pct(lat, 99) <= 0.025 and res["errors"] == 0
    print("target (>= 1,000 req/s, p99 <= 25 ms, 0 errors):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
