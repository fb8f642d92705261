"""The measured rounds: vLLM's load generator run in-process against each server, in cohorts.

Every round is one `vllm bench serve` run (openai-chat backend, random-mm dataset with one image
per request, fixed input/output lengths, --ignore-eos). vLLM's benchmark module is imported once
and its ``main()`` called per round with the argv the CLI would get (importing vLLM costs ~15 s
per process on 2 cores). Around each round the servers' and this process's CPU time is read, so
each round also records CPU milliseconds per completed request.

The schedule: one server per variant at a time (a cohort), measured for ``cohort_reps``
repetitions, then all stopped and fresh ones started, so that each server's lasting speed is
drawn anew; within a repetition, per concurrency, the variants take turns in the order
``bench_stats.round_orders`` gives. Each server gets one unmeasured warm-up round after it
starts and a few unmeasured requests right before each measured round.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

import bench_servers as bs
import bench_stats as st
import transformers_baseline

# Fields of vLLM's result JSON kept per round.
ROUND_FIELDS = (
    "completed", "failed", "duration", "total_input_tokens", "total_output_tokens",
    "request_throughput", "output_throughput", "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms",
    "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "median_itl_ms", "median_e2el_ms",
)  # fmt: skip


# How ``cpu_seconds`` measured the API server (each round records it).
API_CPU_CLOCK = "process-cputime-ns"
TICKS_CLOCK = "stat-ticks"


def cpu_layout() -> tuple[set[int], set[int]] | None:
    """(API-server + load-generator CPUs, engine CPUs), or None with fewer than 2 usable CPUs.

    vLLM's CPU engine keeps two processes busy while it serves (the worker's compute thread and
    the EngineCore scheduler, which busy-waits for each step's result). Left to float on a small
    machine they starve the API server and the load generator at random moments, and throughput
    swings by 2x between rounds. So the engine gets every CPU but the last, and the API server
    and the load generator share the last one, as where the API server has a core of its own.
    """
    usable = sorted(os.sched_getaffinity(0))
    return ({usable[-1]}, set(usable[:-1])) if len(usable) > 1 else None


def pin_threads(pid: int, cpus: set[int]) -> None:
    """sched_setaffinity for every thread of ``pid`` (new threads inherit their creator's)."""
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), cpus)


def process_cpu_ns(pid: int) -> int | None:
    """CPU time in nanoseconds that process ``pid`` has used, all its threads (exited ones
    included): Linux's per-process CPU clock (``clock_gettime`` on ``((~pid) << 3) | 2``, i.e.
    CPUCLOCK_SCHED). None where unavailable."""
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2)
    except (OSError, OverflowError):
        return None


def _front(root: int, tree: dict[int, list[bytes]]) -> list[int]:
    """``root`` down to the API server: past vl-serve's supervisor (``vl_serve.supervise``),
    which runs the API server as its only child. The last pid is the API server."""
    chain = [root]
    with contextlib.suppress(OSError):
        while b"vl_serve.supervise" in Path(f"/proc/{chain[-1]}/cmdline").read_bytes():
            kids = [p for p, fields in tree.items() if int(fields[1]) == chain[-1]]
            if len(kids) != 1:
                break
            chain.append(kids[0])
    return chain


def pin(server: bs.Server, layout: tuple[set[int], set[int]]) -> None:
    """Every thread of the server's API server (and a supervisor above it) on ``layout[0]``, of
    its other processes (the engine) on ``layout[1]``."""
    tree = bs.process_tree(server.proc.pid)
    front = _front(server.proc.pid, tree)
    for pid in tree:
        pin_threads(pid, layout[0] if pid in front else layout[1])


def cpu_seconds(server: bs.Server) -> tuple[dict[str, float], str]:
    """CPU time used so far by the server's processes, by role, and the API server's clock.

    ``api``: the API server (bare vLLM: the process started; vl-serve: its supervisor's child),
    from its CPU clock in nanoseconds (``process_cpu_ns``; clock ticks where that fails):
    vl-serve's additions are spent there and differ from bare vLLM's by tenths of a millisecond
    per request, finer than 10 ms ticks. ``engine``: every other process of the server's tree
    (EngineCore, workers; vl-serve's idle supervisor), user + system clock ticks from
    ``/proc/PID/stat``.
    """
    tick = os.sysconf("SC_CLK_TCK")
    tree = bs.process_tree(server.proc.pid)
    api = _front(server.proc.pid, tree)[-1]
    out, clock = {"api": 0.0, "engine": 0.0}, TICKS_CLOCK
    for pid, fields in tree.items():
        ticks_s = (int(fields[11]) + int(fields[12])) / tick
        ns = process_cpu_ns(pid) if pid == api else None
        if ns is not None:
            clock = API_CPU_CLOCK
        out["api" if pid == api else "engine"] += ticks_s if ns is None else ns / 1e9
    return out, clock


def bench_argv(args: argparse.Namespace, **round_: Any) -> list[str]:
    """The `vllm bench serve` arguments of one round (``round_``: base_url, model, tokenizer,
    concurrency, prompts, seed, result_dir, filename)."""
    r, side = round_, args.image_size
    return [
        "--backend", "openai-chat",
        "--endpoint", "/v1/chat/completions",
        "--base-url", r["base_url"],
        "--model", r["model"],
        "--tokenizer", r["tokenizer"],
        "--dataset-name", "random-mm",
        "--num-prompts", str(r["prompts"]),
        "--max-concurrency", str(r["concurrency"]),
        "--random-input-len", str(args.input_len),
        "--random-output-len", str(args.output_len),
        "--random-range-ratio", "0",
        "--random-mm-base-items-per-request", "1",
        "--random-mm-num-mm-items-range-ratio", "0",
        "--random-mm-limit-mm-per-prompt", '{"image": 1, "video": 0}',
        "--random-mm-bucket-config", f"{{({side}, {side}, 1): 1.0}}",
        "--ignore-eos",
        "--temperature", "0",
        "--seed", str(r["seed"]),
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,99",
        "--disable-tqdm",
        "--save-result",
        "--result-dir", str(r["result_dir"]),
        "--result-filename", r["filename"],
    ]  # fmt: skip


class BenchClient:
    """`vllm bench serve`, imported once and run in-process per round."""

    def __init__(self) -> None:
        from vllm.benchmarks.serve import add_cli_args, main
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        self._main = main
        self._parser = FlexibleArgumentParser(prog="vllm bench serve")
        add_cli_args(self._parser)
        # Importing vLLM leaves ~640k objects tracked by the garbage collector; a full collection
        # in the middle of a round would stall every stream for ~0.4 s, on whichever variant is
        # being measured. vLLM's API server freezes its start-up heap the same way.
        gc.collect()
        gc.freeze()

    def run(self, argv: list[str], log_path: Path) -> dict[str, Any]:
        ns = self._parser.parse_args(argv)
        with (
            open(log_path, "a") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            result: dict[str, Any] = self._main(ns)
        saved = Path(ns.result_dir) / ns.result_filename
        if saved.exists():  # what --save-result wrote (the same numbers, plus metadata)
            result = {**result, **json.loads(saved.read_text())}
        return result


class Rounds:
    """One run's measured rounds over ``plans``, in cohorts (``run``)."""

    def __init__(
        self, args: argparse.Namespace, plans: dict[str, bs.Plan], served: str, model_path: str
    ) -> None:
        self.args, self.plans, self.served, self.model_path = args, plans, served, model_path
        self.workdir: Path = args.workdir
        self.layout = cpu_layout() if args.cpu_layout == "split" else None
        self.rounds: list[dict[str, Any]] = []
        self.starts: dict[str, list[float]] = {v: [] for v in args.variants}
        self.notes: list[str] = []
        self.example_argv: list[str] = []  # the first measured round's `vllm bench serve` argv
        self.servers_per_variant = 0
        self.transformers: Any = None  # the smoke run's transformers baseline
        self._client: Any = None  # BenchClient, imported while the first servers start

    def measure(self, server: bs.Server, rep: int, conc: int, warmup: bool = False) -> None:
        args, name = self.args, server.plan.variant.name
        n = args.warmup_prompts if warmup else args.prompts[conc]
        seed = 7 if warmup else 1000 * (rep + 1) + conc
        argv = bench_argv(
            args,
            base_url=server.base_url,
            model=self.served,
            tokenizer=self.model_path,
            concurrency=conc,
            prompts=n,
            seed=seed,
            result_dir=self.workdir / "raw",
            filename=f"{'warmup' if warmup else f'r{rep}'}-c{conc}-{name}-{server.port}.json",
        )
        if not warmup and args.wake_requests:
            server.wake(self.served, args.wake_requests, args.output_len)
        t0, (cpu0, _), own0 = time.monotonic(), cpu_seconds(server), os.times()
        res = self._client.run(argv, self.workdir / "client.log")
        (cpu1, clock), own1, wall = cpu_seconds(server), os.times(), time.monotonic() - t0
        done = res.get("completed") or 0
        own_s = (own1.user - own0.user) + (own1.system - own0.system)
        cpu_ms = {
            "api_cpu_ms_per_req": 1000 * (cpu1["api"] - cpu0["api"]) / done if done else None,
            "engine_cpu_ms_per_req": (
                1000 * (cpu1["engine"] - cpu0["engine"]) / done if done else None
            ),
            "client_cpu_ms_per_req": 1000 * own_s / done if done else None,
        }
        line = (
            f"{done}/{n} ok, {res.get('request_throughput', 0):.2f} req/s,"
            f" TTFT p50 {res.get('median_ttft_ms', 0):.1f} ms,"
            f" TPOT p50 {res.get('median_tpot_ms', 0):.2f} ms,"
            f" CPU/req api {cpu_ms['api_cpu_ms_per_req'] or 0:.1f} ms"
            f" engine {cpu_ms['engine_cpu_ms_per_req'] or 0:.1f} ms ({wall:.0f}s)"
        )
        if warmup:
            print(f"  warm-up {name} c={conc}: {line}")
            return
        print(f"  [rep {rep + 1}/{args.reps}] c={conc:<3} {name:<11} {line}")
        self.rounds.append(
            {
                "variant": name,
                "rep": rep,
                "concurrency": conc,
                "num_prompts": n,
                "seed": seed,
                "instance": server.instance,
                **{f: res.get(f) for f in ROUND_FIELDS},
                **cpu_ms,
                "api_cpu_clock": clock,
            }
        )
        if not self.example_argv:
            self.example_argv = ["vllm", "bench", "serve", *argv]

    def start_cohort(self, pool: bs.ServerPool) -> dict[str, bs.Server]:
        """One fresh server per variant, started together, pinned and warmed up."""
        servers = {name: pool.start(self.plans[name]) for name in self.args.variants}
        if self._client is None:  # importing vLLM's benchmark overlaps the servers' start-up
            self._client = BenchClient()
            if self.args.smoke:  # its figure does not matter here: overlap it too
                self.transformers = transformers_baseline.run(self.args, self.model_path)
        for name, s in servers.items():
            took = s.wait_ready(self.args.start_timeout)
            self.starts[name].append(round(took, 1))
            print(f"  {name} ready on {s.base_url} after {took:.0f}s")
            if self.layout is not None:
                pin(s, self.layout)
        if self.layout is not None:  # the load generator beside the API server
            pin_threads(os.getpid(), self.layout[0])
        for s in servers.values():
            self.measure(s, 0, self.warmup_slot(), warmup=True)
        self.servers_per_variant = max(pool.started.values())
        return servers

    def slots(self) -> list[Any]:
        """What each repetition measures, in turn, every variant in a drawn order: here each
        concurrency (a subclass may measure other cells, passed to ``measure`` as ``conc``)."""
        return list(self.args.concurrency)

    def warmup_slot(self) -> Any:
        """The cell of the warm-up round after each server start."""
        return max(self.args.concurrency)

    def run(self, t_start: float) -> None:
        args, slots = self.args, self.slots()
        orders = st.round_orders(args.variants, args.reps, len(slots), args.order_seed)
        rep_s = 0.0
        with bs.ServerPool(self.workdir) as pool:
            for rep in range(args.reps):
                left = args.time_budget - (time.monotonic() - t_start) if args.time_budget else 0
                if args.time_budget and rep and left < 1.1 * rep_s:
                    self.notes.append(
                        f"time budget {args.time_budget:.0f} s: {rep} of {args.reps} "
                        f"repetitions ran ({left:.0f} s left, one took {rep_s:.0f} s)"
                    )
                    print("note:", self.notes[-1])
                    break
                if rep % args.cohort_reps == 0:
                    pool.stop_all()  # the next cohort runs with nothing beside it
                    last = min(rep + args.cohort_reps, args.reps)
                    print(f"starting {', '.join(args.variants)} (repetitions {rep + 1}-{last}) ...")
                    servers = self.start_cohort(pool)
                t_rep = time.monotonic()
                for i, slot in enumerate(slots):
                    for name in orders[i][rep]:
                        self.measure(servers[name], rep, slot)
                rep_s = time.monotonic() - t_rep
