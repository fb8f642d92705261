"""The GPU benchmark's model folder (benchmarks/gpu/make_model.py), built in its --tiny shape.

The GPU run itself needs a lent machine; what can go wrong in the folder shows here: the tokenizer
must have every id the random weights can emit, the special tokens must keep the ids the config
names (the real Qwen3-VL ids), and a prompt with
an image must become the vision tokens the model expects.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "gpu"))

import make_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model.build(tmp_path_factory.mktemp("gpu-model") / "m", tiny=True)


def test_tokenizer_has_every_id_and_special_tokens_where_the_config_says(folder: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert len(tok) == config["text_config"]["vocab_size"] == make_model.VOCAB_SIZE
    for key, token in [
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ]:
        assert tok.convert_tokens_to_ids(token) == config[key], key
    assert tok.convert_tokens_to_ids("<|im_end|>") == config["text_config"]["eos_token_id"]
    # Qwen's layout: the added tokens at their real ids, 151643 .. 151668.
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 151643
    assert tok.decode([151668]) == "</think>"
    # Every id decodes to some text: a placeholder, a BPE piece or a special token.
    for i in (0, 1000, 5000, 150_000, make_model.VOCAB_SIZE - 21):
        assert tok.decode([i]), i


def test_the_4b_shape_is_qwen3_vl_4b(tmp_path: Path) -> None:
    text, vision = make_model.TEXT_4B, make_model.VISION_4B
    assert (text["num_hidden_layers"], text["hidden_size"], text["intermediate_size"]) == (
        36,
        2560,
        9728,
    )
    assert (text["num_attention_heads"], text["num_key_value_heads"], text["head_dim"]) == (
        32,
        8,
        128,
    )
    assert vision["out_hidden_size"] == text["hidden_size"]
    assert (vision["depth"], vision["hidden_size"], vision["deepstack_visual_indexes"]) == (
        24,
        1024,
        [5, 11, 17],
    )


@pytest.mark.parametrize(("side", "tokens"), [(448, 196), (64, 64), (2048, 1024)])
def test_an_image_becomes_the_vision_tokens_of_its_size(
    folder: Path, side: int, tokens: int
) -> None:
    """448x448: 28x28 patches of 16 px, merged 2x2. Below 256x256 and above 1024x1024 pixels the
    processor resizes to its bounds (64 and 1024 tokens)."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is it"}]}
    ]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    image = Image.new("RGB", (side, side), (10, 200, 30))
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert ids.count(image_pad) == tokens
