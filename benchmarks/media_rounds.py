"""The media benchmark's rounds: a loopback media host, a streaming load loop, the cohort schedule.

The media host is Python's ``http.server`` on 127.0.0.1, in a process of its own, serving the
generated files; vl-serve and bare vLLM fetch the same URLs from it. A round sends one workload's request
``requests`` times at a fixed concurrency from an asyncio loop (aiohttp, streaming chat
completions): TTFT is the time to the first streamed delta with text (content or reasoning),
and each request's ``usage.prompt_tokens`` is kept, so that the arms can be checked to see the
same image tokens. The schedule is ``bench_rounds.Rounds``'s (cohorts, balanced alternation,
wake-up requests, CPU placement and CPU per request) over (workload, concurrency) cells.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bench_rounds
import bench_servers as bs
import media_workloads as mw


class MediaHost:
    """The files served on a free 127.0.0.1 port (``url``) by a process of their own, until
    ``close()``: Python's ``http.server``, like a media host elsewhere, so that serving them does
    not share an interpreter (and its GIL) with the load loop."""

    def __init__(self, files: dict[str, Path]) -> None:
        folders = {p.parent for p in files.values()}
        if len(folders) != 1 or any(p.name != name for name, p in files.items()):
            raise ValueError("the media host serves the files of one folder, by their names")
        (folder,) = folders
        self._proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "0", "--bind", bs.HOST,
             "--directory", str(folder)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # Serving HTTP on 127.0.0.1 port N (http://...) ...
        found = re.search(r" port (\d+) ", line)
        if found is None:
            self.close()
            raise RuntimeError(f"the media host did not start: {line!r}")
        self.url = f"http://{bs.HOST}:{found.group(1)}"

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def _one(session: Any, url: str, payload: bytes) -> dict[str, Any]:
    """One streaming request: TTFT, latency, tokens, or the error."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"ttft": None, "usage": None, "error": None}
    async with session.post(url, data=payload, headers={"content-type": "application/json"}) as r:
        if r.status != 200:
            out["error"] = f"HTTP {r.status}: {(await r.text())[:300]}"
            return out
        async for raw in r.content:
            line = raw.strip()
            if not line.startswith(b"data:") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if "error" in chunk:
                out["error"] = str(chunk["error"])[:300]
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                text = (
                    delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
                )
                if text and out["ttft"] is None:
                    out["ttft"] = time.perf_counter() - t0
            if chunk.get("usage"):
                out["usage"] = chunk["usage"]
    out["latency"] = time.perf_counter() - t0
    if out["ttft"] is None and out["error"] is None:
        out["error"] = "no streamed text"
    return out


async def _round(url: str, payload: bytes, concurrency: int, n: int) -> dict[str, Any]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=600)
    connector = aiohttp.TCPConnector(limit=concurrency)
    results: list[dict[str, Any]] = []
    queue = list(range(n))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def worker() -> None:
            while queue:
                queue.pop()
                try:
                    results.append(await _one(session, url, payload))
                except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                    results.append({"error": f"{type(exc).__name__}: {exc}"[:300]})

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        duration = time.perf_counter() - t0
    return figures(results, duration)


def figures(results: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    """A round's figures from its requests' results (``_one``'s dicts)."""
    ok = [r for r in results if not r.get("error")]
    ttfts = sorted(1000 * r["ttft"] for r in ok)
    tpots = [
        1000 * (r["latency"] - r["ttft"]) / (r["usage"]["completion_tokens"] - 1)
        for r in ok
        if r.get("usage") and r["usage"].get("completion_tokens", 0) > 1
    ]
    prompt_tokens = sorted({r["usage"]["prompt_tokens"] for r in ok if r.get("usage")})
    errors = [r["error"] for r in results if r.get("error")]
    return {
        "completed": len(ok),
        "failed": len(errors),
        "duration": duration,
        "request_throughput": len(ok) / duration if duration > 0 else None,
        "median_ttft_ms": statistics.median(ttfts) if ttfts else None,
        "p90_ttft_ms": _percentile(ttfts, 90),
        "median_tpot_ms": statistics.median(tpots) if tpots else None,
        "prompt_tokens": prompt_tokens,
        "first_error": errors[0] if errors else None,
    }


Cell = tuple[mw.Workload, int]


class MediaRounds(bench_rounds.Rounds):
    """One deployment's rounds: every (workload, concurrency) cell, alternating the variants."""

    def __init__(
        self,
        args: argparse.Namespace,
        plans: dict[str, bs.Plan],
        served: str,
        model_path: str,
        workloads: list[mw.Workload],
        host: MediaHost,
        inline: dict[str, str],
    ) -> None:
        super().__init__(args, plans, served, model_path)
        self.workloads, self.host, self.inline = workloads, host, inline
        self._client = "aiohttp"  # no `vllm bench serve` client: requests are sent from here
        self._payloads: dict[tuple[str, bool], bytes] = {}
        gc.collect()
        gc.freeze()  # a full collection mid-round would stall every stream (bench_rounds)

    def slots(self) -> list[Cell]:
        return [(w, c) for w in self.workloads for c in self.args.concurrency]

    def warmup_slot(self) -> Cell:
        return (self.workloads[0], max(self.args.concurrency))

    def payload(self, w: mw.Workload, bare: bool) -> bytes:
        key = (w.name, bare)
        if key not in self._payloads:
            body = mw.body(
                w,
                self.served,
                self.host.url,
                self.inline.get(w.media),
                bare=bare,
                max_tokens=self.args.output_len,
            )
            self._payloads[key] = json.dumps(body).encode()
        return self._payloads[key]

    def measure(self, server: bs.Server, rep: int, conc: Any, warmup: bool = False) -> None:
        args, name = self.args, server.plan.variant.name
        bare = server.plan.variant.kind == "vllm"
        url = server.base_url + "/v1/chat/completions"
        if warmup:  # every workload once through the server: decoders, caches, code paths
            for w in self.workloads:
                res = asyncio.run(_round(url, self.payload(w, bare), 1, args.warmup_requests))
                print(f"  warm-up {name} {w.name}: {_line(res)}")
            return
        w, c = conc
        n = args.requests[c] * w.scale
        if args.wake_requests:
            server.wake(self.served, args.wake_requests, args.output_len)
        cpu0, _ = bench_rounds.cpu_seconds(server)
        own0 = os.times()
        res = asyncio.run(_round(url, self.payload(w, bare), c, n))
        (cpu1, clock), own1 = bench_rounds.cpu_seconds(server), os.times()
        done = res["completed"]
        own_s = (own1.user - own0.user) + (own1.system - own0.system)
        per_req = {
            "api_cpu_ms_per_req": 1000 * (cpu1["api"] - cpu0["api"]) / done if done else None,
            "engine_cpu_ms_per_req": (
                1000 * (cpu1["engine"] - cpu0["engine"]) / done if done else None
            ),
            "client_cpu_ms_per_req": 1000 * own_s / done if done else None,
        }
        print(
            f"  [rep {rep + 1}/{args.reps}] {w.name:<16} c={c:<2} {name:<9} {_line(res)}"
            f" api {per_req['api_cpu_ms_per_req'] or 0:.0f} ms/req"
        )
        self.rounds.append(
            {
                "variant": name,
                "deployment": w.deployment,
                "workload": w.name,
                "rep": rep,
                "concurrency": c,
                "num_requests": n,
                "instance": server.instance,
                **res,
                **per_req,
                "api_cpu_clock": clock,
            }
        )


def _line(res: dict[str, Any]) -> str:
    line = (
        f"{res['completed']}/{res['completed'] + res['failed']} ok,"
        f" {res['request_throughput'] or 0:.2f} req/s,"
        f" TTFT p50 {res['median_ttft_ms'] or 0:.0f} ms p90 {res['p90_ttft_ms'] or 0:.0f} ms,"
        f" prompt tokens {res['prompt_tokens']}"
    )
    return line + (f" ERROR {res['first_error']}" if res["first_error"] else "")
