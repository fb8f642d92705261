"""A Qwen3-VL-4B-shaped model folder with no weights, for `vllm serve --load-format dummy`.

No checkpoint can be downloaded on the benchmark machines, and a GPU benchmark of the tiny model
would measure nothing but overheads. vLLM's dummy loader fills real shapes with random values, so
what a server does per token and per image is what it does for Qwen3-VL-4B-Instruct; only the
text is noise. The folder holds what vLLM reads besides weights:

- ``config.json``: Qwen3-VL-4B-Instruct's architecture (36 layers, hidden 2560, GQA 32/8,
  head_dim 128, vocab 151936, tied embeddings; vision tower 24 blocks, hidden 1024, deepstack
  at 5/11/17, 16 px patches, 2x2 merge);
- the tokenizer of the embedded tiny model (vl-serve's byte-level BPE with Qwen's special and
  think tokens and chat template), its vocabulary padded with placeholder tokens to the real
  151936 ids, so every id the random weights can emit decodes to text (an id a tokenizer lacks
  decodes to nothing, and a stream of nothing has no first token to time);
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

VOCAB_SIZE = 151936

TEXT_4B = {
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "attention_bias": False,
    "max_position_embeddings": 262144,
    "rope_scaling": {
        "rope_type": "default",
        "mrope_section": [24, 20, 20],
        "mrope_interleaved": True,
    },
    "rope_theta": 5000000,
    "tie_word_embeddings": True,
}
VISION_4B = {
    "depth": 24,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_heads": 16,
    "in_channels": 3,
    "hidden_act": "gelu_pytorch_tanh",
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "out_hidden_size": 2560,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [5, 11, 17],
}
# --tiny: the same folder, small enough for a CPU rehearsal.
TEXT_TINY = {
    **TEXT_4B,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "rope_scaling": {"rope_type": "default", "mrope_section": [6, 5, 5], "mrope_interleaved": True},
}
VISION_TINY = {
    **VISION_4B,
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": 64,
    "num_position_embeddings": 256,
    "deepstack_visual_indexes": [1],
}


def pad_vocab(out: Path, size: int) -> dict[str, int]:
    """Give the tokenizer in ``out`` exactly ``size`` ids, laid out as Qwen's are: the BPE
    vocabulary, placeholder tokens after it, then the added (special and think) tokens last.
    Returns the added tokens' new ids. (transformers renumbers added tokens that sit in a gap
    of the vocabulary, so they cannot stay where the tiny tokenizer has them.)"""
    path = out / "tokenizer.json"
    data = json.loads(path.read_text())
    vocab: dict[str, int] = data["model"]["vocab"]
    added = sorted(data["added_tokens"], key=lambda t: t["id"])
    assert sorted(vocab.values()) == list(range(len(vocab))), "BPE ids are not 0..n-1"
    first_added = size - len(added)
    for i in range(len(vocab), first_added):
        vocab[f"<|x{i}|>"] = i
    for i, tok in enumerate(added):
        tok["id"] = first_added + i
    path.write_text(json.dumps(data, ensure_ascii=False))
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    if "added_tokens_decoder" in cfg:  # keyed by the old ids
        by_name = {t["content"]: t["id"] for t in added}
        cfg["added_tokens_decoder"] = {
            str(by_name[v["content"]]): v for v in cfg["added_tokens_decoder"].values()
        }
        cfg_path.write_text(json.dumps(cfg, indent=2))
    return {t["content"]: t["id"] for t in added}


def build(out: Path, *, tiny: bool = False) -> Path:
    from transformers import AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    builtin_models.build_qwen_tokenizer(out)
    ids = pad_vocab(out, VOCAB_SIZE)
    tokenizer = AutoTokenizer.from_pretrained(out)
    moved = {t: i for t, i in ids.items() if tokenizer.convert_tokens_to_ids(t) != i}
    if moved or len(tokenizer) != VOCAB_SIZE:
        raise SystemExit(f"tokenizer ids moved on reload: {moved}, size {len(tokenizer)}")
    text = TEXT_TINY if tiny else TEXT_4B
    config = {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "model_type": "qwen3_vl",
        "text_config": {
            **text,
            "model_type": "qwen3_vl_text",
            "vocab_size": VOCAB_SIZE,
            "dtype": "bfloat16",
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        "vision_config": {**(VISION_TINY if tiny else VISION_4B), "model_type": "qwen3_vl"},
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": text["tie_word_embeddings"],
        "dtype": "bfloat16",
    }
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
