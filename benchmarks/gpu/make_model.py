"""A Qwen3-VL-4B-shaped model folder with no weights, for `vllm serve --load-format dummy`.

No checkpoint can be downloaded on the benchmark machines, and a GPU benchmark of the tiny model
would measure nothing but overheads. vLLM's dummy loader fills real shapes with random values, so
what a server does per token and per image is what it does for Qwen3-VL-4B-Instruct; only the
text is noise. The folder holds what vLLM reads besides weights:

- ``config.json``: Qwen3-VL-4B-Instruct's architecture (36 layers, hidden 2560, GQA 32/8,
  head_dim 128, vocab 151936, tied embeddings; vision tower 24 blocks, hidden 1024, deepstack
  at 5/11/17, 16 px patches, 2x2 merge);
- the tokenizer of the embedded tiny model (vl-serve's byte-level BPE with Qwen's special and
  think tokens at their real ids, 151643 .. 151668, and its chat template), its vocabulary padded
  with placeholder tokens to the real 151936 ids, so every id the random weights can emit decodes
  to text (an id a tokenizer lacks decodes to nothing, and a stream of nothing has no first token
  to time);
- Qwen3-VL's image processor (16 px patches, 2x2 merge), images bounded to 256x256 .. 1024x1024
  pixels (a 448x448 image is 196 tokens).

    python benchmarks/gpu/make_model.py OUT [--tiny]

``--tiny`` writes the same folder with a 2-layer, 64-wide shape: a CPU rehearsal of the GPU
benchmark's configuration (``benchmarks/gpu/README.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from vl_serve import builtin as builtin_models  # noqa: E402
from vl_serve.builtin import qwen3_vl  # noqa: E402

VOCAB_SIZE = qwen3_vl.QWEN_VOCAB_SIZE
TEXT_4B = qwen3_vl.QWEN3_VL_4B_TEXT
VISION_4B = qwen3_vl.QWEN3_VL_4B_VISION
# --tiny: the embedded tiny model's shape, small enough for a CPU rehearsal.
TEXT_TINY = qwen3_vl.TINY_TEXT
VISION_TINY = qwen3_vl.TINY_VISION


def build(out: Path, *, tiny: bool = False) -> Path:
    from transformers import AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    ids = builtin_models.build_qwen_tokenizer(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    if len(tokenizer) != VOCAB_SIZE:
        raise SystemExit(f"tokenizer has {len(tokenizer)} ids, not {VOCAB_SIZE}")
    config = qwen3_vl.qwen3_vl_config(
        TEXT_TINY if tiny else TEXT_4B, VISION_TINY if tiny else VISION_4B
    )
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "generation_config.json").write_text(
        json.dumps(
            {
                "bos_token_id": ids["<|endoftext|>"],
                "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
                "pad_token_id": ids["<|endoftext|>"],
            },
            indent=2,
        )
        + "\n"
    )
    builtin_models.save_qwen3_vl_processor(
        out, tokenizer, min_pixels=256 * 256, max_pixels=1024 * 1024
    )
    again = AutoTokenizer.from_pretrained(out)  # after the processor saved it once more
    if any(again.convert_tokens_to_ids(t) != i for t, i in ids.items()):
        raise SystemExit("tokenizer ids moved when the processor saved it")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("out", type=Path)
    p.add_argument("--tiny", action="store_true", help="2 layers, 64 wide (CPU rehearsal)")
    args = p.parse_args(argv)
    print(build(args.out, tiny=args.tiny))
    return 0


if __name__ == "__main__":
    sys.exit(main())
