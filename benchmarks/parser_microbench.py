"""Streaming cost per delta of vl-serve's reasoning parsers, next to vLLM's own.

Two measurements over the same generated reply (half reasoning, ``</think>``, half answer), one
token per delta, texts from the tokenizers ``DecodeStream`` that vLLM's detokenizer uses:

- ``parser``: the reasoning parser's ``extract_reasoning_streaming`` alone, called for every delta
  with the arguments vLLM gives that kind of parser (engine-based parsers get the delta only;
  legacy ones the whole previous/current text and ids, built outside the timed call);
- ``parse_delta``: vLLM's per-request ``Parser.parse_delta``, i.e. what the chat server runs per
  delta with ``--reasoning-parser NAME`` (the parser plus vLLM's own bookkeeping); ``none`` is what
  the server does per delta without a reasoning parser (one ``DeltaMessage``).

Each figure is the median over ``--repeats`` runs of the mean cost per delta, in microseconds.

    python benchmarks/parser_microbench.py [--deltas N] [--repeats R] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LIMIT_US = 20.0
OURS = {"qwen3_vl": "qwen3", "ernie45_vl": "ernie45"}  # ours -> vLLM's parser for the same model


def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "arch": platform.machine(),
        "system": platform.platform(),
        "python": platform.python_version(),
    }


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "commit": git("rev-parse", "--verify", "-q", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain")),
    }


def _reply(tok: Any, n: int) -> tuple[list[int], list[int], list[str]]:
    """Prompt ids, n output ids (reasoning, </think>, answer) and each token's delta text."""
    from tokenizers.decoders import DecodeStream

    sentence = "the model looks at the picture and counts two red cars then one blue car so "
    body = tok.encode(sentence * (n // 8 + 1), add_special_tokens=False)
    end = tok.convert_tokens_to_ids("</think>")
    out_ids = [*body[: n // 2], end, *body[: n - n // 2 - 1]]
    prompt = tok.encode("User: How many cars?\nAssistant: <think>\n", add_special_tokens=False)
    try:
        stream = DecodeStream(ids=prompt, skip_special_tokens=True)
    except TypeError:
        stream = DecodeStream(skip_special_tokens=True)
    texts = [stream.step(tok.backend_tokenizer, t) or "" for t in out_ids]
    return prompt, out_ids, texts


def _time_parser(parser: Any, out_ids: list[int], texts: list[str]) -> float:
    engine = getattr(parser, "engine_based_streaming", False)
    prev_text, prev_ids = "", list[int]()
    total = 0
    clock = time.perf_counter_ns
    for tid, text in zip(out_ids, texts, strict=True):
        delta = [tid]
        args: tuple[Any, ...]
        if engine:  # what vLLM passes engine-based parsers
            args = ("", text, text, [], delta, delta)
        else:  # what vLLM passes legacy parsers (built outside the timed call)
            cur_text, cur_ids = prev_text + text, prev_ids + delta
            args = (prev_text, cur_text, text, prev_ids, cur_ids, delta)
            prev_text, prev_ids = cur_text, cur_ids
        t0 = clock()
        parser.extract_reasoning_streaming(*args)
        total += clock() - t0
    return total / len(out_ids) / 1000


def _time_parse_delta(
    parser_cls: Any, tok: Any, prompt: list[int], out_ids: list[int], texts: list[str]
) -> float:
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    request = ChatCompletionRequest(
        model="bench",
        messages=[{"role": "user", "content": "How many cars?"}],
        chat_template_kwargs={"enable_thinking": True},
        stream=True,
    )
    parser = parser_cls(tok, None, chat_template_kwargs={"enable_thinking": True})
    last = len(out_ids) - 1
    t0 = time.perf_counter_ns()
    for i, (tid, text) in enumerate(zip(out_ids, texts, strict=True)):
        parser.parse_delta(text, [tid], request, prompt_token_ids=prompt, finished=i == last)
    return (time.perf_counter_ns() - t0) / len(out_ids) / 1000


def _time_no_parser(texts: list[str]) -> float:
    from vl_serve_plugins.reasoning.base import DeltaMessage

    t0 = time.perf_counter_ns()
    for text in texts:
        DeltaMessage(content=text)
    return (time.perf_counter_ns() - t0) / len(texts) / 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deltas", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/parser_microbench.json")
    args = ap.parse_args(argv)

    import vllm
    from transformers import AutoTokenizer
    from vllm.parser.parser_manager import ParserManager
    from vllm.reasoning import ReasoningParserManager

    import vl_serve_plugins
    from vl_serve.builtin import build_qwen_tokenizer
    from vl_serve.builtin.ernie45_vl import build_ernie_tokenizer

    vl_serve_plugins.register()
    toks: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        build_qwen_tokenizer(Path(tmp, "qwen"))
        build_ernie_tokenizer(Path(tmp, "ernie"))
        toks["qwen3_vl"] = AutoTokenizer.from_pretrained(Path(tmp, "qwen"))
        toks["ernie45_vl"] = AutoTokenizer.from_pretrained(Path(tmp, "ernie"))

    results: dict[str, dict[str, Any]] = {"parser": {}, "parse_delta": {}}
    for ours, theirs in OURS.items():
        tok = toks[ours]
        prompt, out_ids, texts = _reply(tok, args.deltas)
        for name in (ours, theirs):
            cls = ReasoningParserManager.get_reasoning_parser(name)
            runs = []
            for _ in range(args.repeats):
                parser = cls(tok, chat_template_kwargs={"enable_thinking": True})
                parser.adjust_initial_state_from_prompt(prompt)
                runs.append(_time_parser(parser, out_ids, texts))
            results["parser"][name] = {"us_per_delta": statistics.median(runs), "runs": runs}

            parser_cls = ParserManager.get_parser(reasoning_parser_name=name)
            runs = [
                _time_parse_delta(parser_cls, tok, prompt, out_ids, texts)
                for _ in range(args.repeats)
            ]
            results["parse_delta"][name] = {"us_per_delta": statistics.median(runs), "runs": runs}
        runs = [_time_no_parser(texts) for _ in range(args.repeats)]
        results["parse_delta"][f"none ({ours} text)"] = {
            "us_per_delta": statistics.median(runs),
            "runs": runs,
        }

    ok = all(results["parser"][name]["us_per_delta"] < LIMIT_US for name in OURS)
    report = {
        "benchmark": "reasoning parser streaming cost per delta",
        "deltas": args.deltas,
        "repeats": args.repeats,
        "tokens_per_delta": 1,
        "reply": "half reasoning (the template opened <think>), </think>, half answer",
        "vllm": vllm.__version__,
        "git": _git(),
        "machine": _machine(),
        "limit_us_per_delta": LIMIT_US,
        "ok": ok,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for section, rows in results.items():
        print(f"{section}:")
        for name, row in rows.items():
            print(f"  {name:28s} {row['us_per_delta']:8.2f} us/delta")
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
