"""Where the API server spends its CPU, variant against variant, under the same load.

    python benchmarks/profile_variants.py [--variants vllm,vl-serve,...] [--concurrency 16]

Starts every variant (as ``bench.py`` does: same config, same CPU layout), warms each up, then
for each variant in turn runs one `vllm bench serve` round while py-spy samples the API server
(``--rate`` Hz, raw stacks), and records the API server's CPU per request over that round.
Rounds alternate over ``--reps`` repetitions. Writes ``OUT/<variant>-r<rep>.raw`` and
``OUT/summary.json``; ``profile_summary.py OUT/*.raw`` summarises the stacks.
Needs py-spy (``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench
import bench_servers as bs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--variants", default="vllm,vl-serve-noparser,vllm-qwen3_vl,vl-serve")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--prompts", type=int, default=200)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--out", type=Path, default=Path("build/profile"))
    p.add_argument("--no-spy", action="store_true", help="CPU per request only")
    a = p.parse_args(argv)
    names = [v.strip() for v in a.variants.split(",") if v.strip()]
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    a.out.mkdir(parents=True, exist_ok=True)
    args = bench.parse_args(["--concurrency", str(a.concurrency), "--prompts", str(a.prompts)])
    workdir = Path(tempfile.mkdtemp(prefix="vl-serve-prof-"))
    plans = bs.plan_variants(names, args.config, workdir, vl_serve_parser=bs.VL_SERVE_PARSER)
    from vl_serve import config as vconfig
    from vl_serve import launch

    cfg = vconfig.from_dict(next(iter(plans.values())).config, str(args.config))
    model_path = launch.model_path(cfg, build=True)
    served = cfg.served_model_name if isinstance(cfg.served_model_name, str) else cfg.model
    layout = bs.cpu_layout()
    summary: list[dict[str, object]] = []
    with bs.ServerPool(workdir) as pool:
        servers = {n: pool.start(plans[n]) for n in names}
        client = bench.BenchClient()
        for s in servers.values():
            s.wait_ready(900)
            if layout:
                s.pin(*layout)
        if layout:
            bs.pin_threads(os.getpid(), layout[0])

        def round_(s: bs.Server, n: int, seed: int, raw: Path | None) -> dict[str, object]:
            argv = bench.bench_argv(
                args,
                base_url=s.base_url,
                model=served,
                tokenizer=model_path,
                concurrency=a.concurrency,
                prompts=n,
                seed=seed,
                result_dir=workdir,
                filename=f"{s.plan.variant.name}-{seed}.json",
            )
            s.wake(served, 2, args.output_len)
            rec = None
            if raw is not None:
                rec = subprocess.Popen(
                    [spy, "record", "-p", str(s.proc.pid), "-r", str(a.rate), "-f", "raw",
                     "-o", str(raw), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(1.0)
            cpu0 = s.cpu_seconds()["api"]
            res = client.run(argv, workdir / "client.log")
            cpu1 = s.cpu_seconds()["api"]
            if rec is not None:
                rec.send_signal(2)
                rec.wait(30)
            done = res.get("completed") or 1
            return {
                "variant": s.plan.variant.name,
                "seed": seed,
                "completed": res.get("completed"),
                "request_throughput": res.get("request_throughput"),
                "median_ttft_ms": res.get("median_ttft_ms"),
                "api_cpu_ms_per_req": 1000 * (cpu1 - cpu0) / done,
                "raw": str(raw) if raw else None,
            }

        for s in servers.values():
            round_(s, 32, 7, None)
        for rep in range(a.reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for n in order:
                raw = None if a.no_spy else a.out / f"{n}-r{rep}.raw"
                r = round_(servers[n], a.prompts, 100 + rep, raw)
                r["rep"] = rep
                summary.append(r)
                print(json.dumps(r), flush=True)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
