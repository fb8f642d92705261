"""A plain transformers server's request loop on the same model: `generate`, one at a time.

The usual FastAPI + transformers server handles a request by building the chat prompt, decoding
the image, running the processor and `model.generate`, then decoding the answer, one request at a
time. This runs exactly that loop, minus HTTP (so it is an upper bound for such a server), for N
requests with the same 64x64 image, an ~64-token random text prompt and 64 new tokens
(min_new_tokens=64 so every request generates the same count), after one warm-up request.
`bench.py` runs it in a process of its own (``run``) before any server starts.

    .venv/bin/python benchmarks/transformers_baseline.py [--requests 8] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--model", help="model folder (default: the built tiny-qwen3-vl)")
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--input-len", type=int, default=64, help="random text tokens per prompt")
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1, as vLLM's CPU worker here; 2 threads on a shared 2-core "
        "machine collapse under any other load)",
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    p.add_argument(
        "--dummy-weights",
        action="store_true",
        help="random weights from the folder's config.json (a folder with no weights, as the GPU "
        "benchmark's benchmarks/gpu/make_model.py writes; vLLM's --load-format dummy)",
    )
    p.add_argument("--json-out", type=Path)
    return p.parse_args(argv)


def random_text(tokenizer: Any, n_tokens: int, rng: random.Random) -> str:
    """Text of about ``n_tokens`` random ordinary tokens (as vLLM's random datasets do)."""
    special = set(tokenizer.all_special_ids)
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    pool = [i for i in range(len(tokenizer)) if i not in special and i not in added]
    ids = [rng.choice(pool) for _ in range(n_tokens)]
    # decode -> encode can merge or split tokens: trim so the text re-encodes to n_tokens
    again = tokenizer.encode(tokenizer.decode(ids), add_special_tokens=False)[:n_tokens]
    return str(tokenizer.decode(again))


def png_data_url(size: int, rng: random.Random) -> str:
    from PIL import Image

    img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    torch.set_num_threads(args.threads)
    model_dir = args.model
    if model_dir is None:
        from vl_serve import builtin as builtin_models

        model_dir = str(builtin_models.ensure_built("tiny-qwen3-vl"))
    t0 = time.perf_counter()
    if args.dummy_weights:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_dir)
        with torch.device(args.device):
            model = Qwen3VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    else:
        model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.bfloat16)
        model.to(args.device)
    model.eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    load_s = time.perf_counter() - t0

    rng = random.Random(args.seed)
    image_url = png_data_url(args.image_size, rng)  # the same image for every request
    prompts = [
        random_text(processor.tokenizer, args.input_len, rng) for _ in range(args.requests + 1)
    ]

    def handle(text_prompt: str) -> tuple[int, int]:
        """One request, as such a server's endpoint handles it."""
        raw = base64.b64decode(image_url.split(",", 1)[1])
        image = Image.open(io.BytesIO(raw)).convert("RGB")
        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": image},
                    {"type": "text", "text": text_prompt},
                ],
            }
        ]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[text], images=[image], padding=True, return_tensors="pt")
        inputs = inputs.to(args.device)
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=args.output_len,
                min_new_tokens=args.output_len,
                do_sample=False,
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        processor.batch_decode(new, skip_special_tokens=True)
        return int(inputs["input_ids"].shape[1]), int(new.shape[1])

    handle(prompts[0])  # warm-up, unmeasured
    latencies = []
    in_tokens = out_tokens = 0
    start = time.perf_counter()
    for text_prompt in prompts[1:]:
        t = time.perf_counter()
        n_in, n_out = handle(text_prompt)
        latencies.append(time.perf_counter() - t)
        in_tokens += n_in
        out_tokens += n_out
    duration = time.perf_counter() - start

    result = {
        "what": "transformers Qwen3VLForConditionalGeneration.generate, one request at a time "
        "(a FastAPI + transformers server's loop without HTTP)",
        "model": model_dir,
        "requests": args.requests,
        "duration_s": duration,
        "request_throughput": args.requests / duration,
        "output_throughput": out_tokens / duration,
        "median_latency_ms": statistics.median(latencies) * 1000,
        "mean_input_tokens": in_tokens / args.requests,
        "output_tokens_per_request": out_tokens / args.requests,
        "image": f"{args.image_size}x{args.image_size}",
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "weights": "random (from config.json)" if args.dummy_weights else "checkpoint",
        "load_s": load_s,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    text = json.dumps(result, indent=1)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    print(text)
    return 0


def run(args: argparse.Namespace, model_path: str) -> Any:
    """This script in a process of its own with `bench.py`'s settings (``args``): its result
    dict, an error dict, or None when ``args.transformers_requests`` is 0."""
    if args.transformers_requests <= 0:
        return None
    out, log_path = args.workdir / "transformers.json", args.workdir / "transformers.log"
    cmd = [
        sys.executable, __file__,
        "--model", model_path,
        "--requests", str(args.transformers_requests),
        "--input-len", str(args.input_len),
        "--output-len", str(args.output_len),
        "--image-size", str(args.image_size),
        "--json-out", str(out),
    ]  # fmt: skip
    print(f"transformers baseline: {args.transformers_requests} sequential requests ...")
    with open(log_path, "wb") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not out.exists():
        tail = log_path.read_text(errors="replace")[-2000:]
        print(f"transformers baseline failed (rc {proc.returncode}):\n{tail}", file=sys.stderr)
        return {"error": f"exit {proc.returncode}", "log_tail": tail[-500:]}
    result = json.loads(out.read_text())
    print(f"  {result['request_throughput']:.3f} req/s, {result['output_throughput']:.1f} tok/s")
    return result


if __name__ == "__main__":
    sys.exit(main())
