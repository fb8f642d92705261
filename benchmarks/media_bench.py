"""vl-serve against bare `vllm serve` on real-world media: large photos, screenshots, video.

Both fetch the same URLs from a loopback media host (vl-serve fetches and checks them itself,
bare vLLM with its own fetcher allowed for 127.0.0.1); the rounds alternate the variants (bare
vLLM, vl-serve, bare vLLM again as an A/A arm) in a balanced order, in cohorts of fresh servers,
per workload and concurrency, as `bench.py` does (benchmarks/README.md, "Media benchmark").

    .venv/bin/python benchmarks/media_bench.py            # the full run (make bench-media)
    .venv/bin/python benchmarks/media_bench.py --smoke    # harness check: one rep, two workloads

Writes OUT/media.json and OUT/media.png. Figures only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench
import bench_report
import bench_servers as bs
import bench_stats as st
import media_report
import media_rounds
import media_workloads as mw
import yaml

SMOKE_OUT = bs.REPO / "build" / "bench-media-smoke"
SCHEMA = 1
NOPRESIZE = "vl-serve-nopresize"  # optional: vl-serve with media.presize false
VARIANTS = (st.BASELINE, "vl-serve", st.CALIBRATION, NOPRESIZE)


def presize_exists() -> bool:
    from vl_serve.media_config import MediaConfig

    return "presize" in MediaConfig.model_fields


# Settings that differ between the full run and --smoke (where not given on the command line).
MODES: dict[str, dict[str, Any]] = {
    "full": {
        "variants": "vllm,vl-serve,vllm-b",
        "requests": {1: 4, 8: 12},
        "reps": 4,
        "time_budget": 1200.0,
        "out": bench.RESULTS,
    },
    "smoke": {
        "variants": "vllm,vl-serve",
        "requests": {1: 2, 8: 8},
        "reps": 1,
        "time_budget": None,
        "out": SMOKE_OUT,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = p.add_argument
    add("--smoke", action="store_true", help="harness check: vllm and vl-serve, one repetition")
    add("--workloads", help=f"comma list of {', '.join(mw.WORKLOADS)} (default: all)")
    add("--variants", help=f"comma list of {', '.join(VARIANTS)} (default: the first three)")
    add("--concurrency", type=lambda t: [int(x) for x in t.split(",")], default=[1, 8])
    add("--requests", type=bench._prompts, help="per round: N, or conc:N,... (e.g. 1:4,8:16)")
    add("--reps", type=int, help="repetitions (each: every variant on every cell)")
    add("--time-budget", type=float, help="seconds (default 1200), shared by the deployments")
    add("--cohort-reps", type=int, help="repetitions on one set of servers (default: all)")
    add("--warmup-requests", type=int, default=1, help="per workload after each server start")
    add("--order-seed", type=int, help="seed of the round order (default: a fresh one, recorded)")
    add("--wake-requests", type=int, default=1, help="unmeasured requests before each round")
    add("--max-tokens", type=int, default=8, help="tokens per answer (ignore_eos)")
    add("--cpu-layout", choices=("split", "none"), default="split",
        help="split: API server and load generator on the last CPU, engine on the others")  # fmt: skip
    add("--config", type=Path, default=bs.DEFAULT_CONFIG, help="the vl-serve config")
    add("--start-timeout", type=float, default=900.0, help="server start, seconds")
    add("--out", type=Path, help="output folder (default: benchmarks/results)")
    add("--keep-workdir", action="store_true", help="keep the media and server logs")
    args = p.parse_args(argv)
    mode = MODES["smoke" if args.smoke else "full"]
    vars(args).update({k: v for k, v in mode.items() if getattr(args, k) is None})
    args.cohort_reps = args.cohort_reps or args.reps
    if min(args.reps, args.cohort_reps) < 1:
        p.error("--reps and --cohort-reps must be at least 1")
    if args.order_seed is None:
        args.order_seed = random.SystemRandom().randrange(2**32)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if bad := [v for v in args.variants if v not in VARIANTS]:
        p.error(f"--variants: unknown {bad}; choose from {', '.join(VARIANTS)}")
    if NOPRESIZE in args.variants and not presize_exists():
        p.error(f"--variants: {NOPRESIZE} needs media.presize, which this vl-serve lacks")
    try:
        args.workloads = mw.select(args.workloads, smoke=args.smoke)
    except ValueError as exc:
        p.error(f"--workloads: {exc}")
    if isinstance(args.requests, int):
        args.requests = dict.fromkeys(args.concurrency, args.requests)
    if missing := [c for c in args.concurrency if c not in args.requests]:
        p.error(f"--requests gives no count for concurrency {missing}")
    args.output_len = args.max_tokens  # the wake-up requests' length (bench_servers)
    return args


def _served(plan: bs.Plan, config_path: Path) -> tuple[str, str]:
    from vl_serve import config as vconfig
    from vl_serve import launch

    cfg = vconfig.from_dict(plan.config, str(config_path))
    names = cfg.served_model_name or cfg.model
    return (names[0] if isinstance(names, list) else names), launch.model_path(cfg, build=True)


def budget_weight(workloads: int) -> int:
    """A deployment's share of the time budget: its workloads, plus about two workloads' worth
    for starting its servers."""
    return workloads + 2


def plan(args: argparse.Namespace, deployment: str, config: dict[str, Any]) -> dict[str, bs.Plan]:
    """The variants' plans for one deployment; ``vl-serve-nopresize`` is vl-serve's with
    ``media.presize: false``."""
    overrides = mw.config_overrides(deployment, config)
    names = [v for v in args.variants if v != NOPRESIZE]
    plans = bs.plan_variants(
        names,
        args.config,
        args.workdir,
        vl_serve_parser=None,
        overrides=overrides,
        bare_argv=mw.bare_argv,
    )
    if NOPRESIZE in args.variants:
        media = {**overrides["media"], "presize": False}
        (vl,) = bs.plan_variants(
            ["vl-serve"],
            args.config,
            args.workdir,
            vl_serve_parser=None,
            overrides={**overrides, "media": media},
        ).values()
        variant = bs.Variant(NOPRESIZE, "vl-serve", None, "vl-serve, presize off")
        plans[NOPRESIZE] = dataclasses.replace(vl, variant=variant)
    return {v: plans[v] for v in args.variants}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Media, host, one cohort schedule per deployment, the result dict."""
    t_start = time.monotonic()
    env = bench.environment()
    notes: list[str] = []
    if others := env["other_vllm_servers_at_start"]:
        notes.append(f"{len(others)} other vLLM server process(es) were running at start")
    args.workdir = Path(tempfile.mkdtemp(prefix="vl-serve-media-bench-"))
    ok = False
    host = None
    try:
        print("generating media ...")
        files = mw.generate(args.workdir, {w.media for w in args.workloads})
        media = {n: {"bytes": p.stat().st_size} for n, p in files.items()}
        inline = {w.media: mw.data_url(files[w.media]) for w in args.workloads if w.inline}
        host = media_rounds.MediaHost(files)
        config = yaml.safe_load(args.config.read_text(encoding="utf-8"))
        groups = mw.by_deployment(args.workloads)
        rounds: list[dict[str, Any]] = []
        deployments: dict[str, Any] = {}
        for i, (deployment, workloads) in enumerate(groups.items()):
            sub = argparse.Namespace(**vars(args))
            if args.time_budget:  # what is left, shared with the deployments still to run
                left = args.time_budget - (time.monotonic() - t_start)
                weights = [budget_weight(len(ws)) for ws in list(groups.values())[i:]]
                sub.time_budget = max(0.0, left) * weights[0] / sum(weights)
            plans = plan(args, deployment, config)
            served, model_path = _served(next(iter(plans.values())), args.config)
            print(f"deployment {deployment}: {', '.join(w.name for w in workloads)}")
            mr = media_rounds.MediaRounds(sub, plans, served, model_path, workloads, host, inline)
            mr.run(time.monotonic())
            rounds += mr.rounds
            notes += mr.notes
            deployments[deployment] = {
                "overrides": mw.config_overrides(deployment, config),
                "workloads": [w.name for w in workloads],
                "variants": {
                    n: {"vllm_command": p.display, "notes": p.notes} for n, p in plans.items()
                },
                "startup_s": mr.starts,
                "cpu_layout": sorted(map(sorted, mr.layout)) if mr.layout else "none",
            }
        base = st.BASELINE if st.BASELINE in args.variants else args.variants[0]
        summary = media_report.summarize(rounds, args.variants)
        env["loadavg_end"] = list(os.getloadavg())
        result: dict[str, Any] = {
            "kind": "vl-serve-media-bench",
            "schema": SCHEMA,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "mode": "smoke" if args.smoke else "full",
            "wall_s": round(time.monotonic() - t_start, 1),
            "settings": {
                "baseline": base,
                "variants": args.variants,
                "workloads": {
                    w.name: {
                        "deployment": w.deployment,
                        "media": w.media,
                        "inline": w.inline,
                        "frames": w.frames,
                        "description": w.description,
                        "requests_scale": w.scale,
                    }
                    for w in args.workloads
                },
                "concurrency": args.concurrency,
                "requests": {str(c): args.requests[c] for c in args.concurrency},
                "reps": args.reps,
                "reps_run": len({r["rep"] for r in rounds}),
                "cohort_reps": args.cohort_reps,
                "time_budget_s": args.time_budget,
                "order": st.ORDER_DESIGN,
                "order_seed": args.order_seed,
                "max_tokens": args.max_tokens,
                "warmup_requests": args.warmup_requests,
                "wake_requests": args.wake_requests,
                "ttft": "first streamed delta with text (content or reasoning)",
                "command": " ".join(["benchmarks/media_bench.py", *sys.argv[1:]]),
            },
            "media": media,
            "environment": env,
            "deployments": deployments,
            "summary": summary,
            "comparisons": media_report.compare_all(rounds, args.variants, base),
            "warnings": media_report.token_mismatches(summary, base),
            "rounds": rounds,
            "notes": notes,
        }
        ok = True
        return result
    finally:
        if host is not None:
            host.close()
        if ok and not args.keep_workdir:
            shutil.rmtree(args.workdir, ignore_errors=True)
        else:
            print(f"media and server logs kept in {args.workdir}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(media_report.report(result))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "media.json"
    path.write_text(bench_report.dumps(result))
    try:
        media_report.plot(result, path.with_suffix(".png"))
    except ImportError as exc:
        print(f"no plot ({exc}); install matplotlib", file=sys.stderr)
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return 1 if result["warnings"] else 0


if __name__ == "__main__":
    # Servers are stopped inside main(), also on errors and signals; then exit at once, without
    # interpreter teardown, which threads left by vLLM's imports could hold up (as bench.py).
    status = 1
    try:
        status = main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
