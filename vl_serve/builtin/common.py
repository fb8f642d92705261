"""What every tiny model builder shares: a seeded byte-level BPE trainer and a random-weight saver.

Both are deterministic (fixed seeds), so a model built twice is the same model and a cache built on
one machine matches one built on another. transformers, tokenizers and torch are imported inside
the functions: importing vl_serve.builtin stays cheap for the launcher.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SEED = 1234


def _corpus(words: list[str], seed: int, lines: int) -> Iterator[str]:
    """Seeded lines of ``words`` with punctuation, digits, every printable ASCII and a JSON call."""
    rng = random.Random(seed)
    for _ in range(lines):
        line = [rng.choice(words) for _ in range(rng.randint(3, 16))]
        yield " ".join(line) + rng.choice([".", "?", "!", ",", ":", " 42", " 3.14", "\n", "\n\n"])
    yield "".join(chr(c) for c in range(32, 127))
    yield '{"name": "get_weather", "arguments": {"city": "Paris"}}'


def train_byte_bpe(
    words: list[str], *, seed: int = SEED, vocab_size: int = 1024, lines: int = 3000
) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on a seeded corpus of ``words``.

    Byte-level, so any text encodes and every id decodes; the model's special and added tokens
    are added afterwards by its builder, with the kinds (special or not) of the real tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    tok.train_from_iterator(_corpus(words, seed, lines), trainer=trainer)
    return tok


def save_random_model(
    model_cls: Any, config: Any, out: Path, *, bos: int, eos: list[int], pad: int
) -> None:
    """Seeded random weights for ``config`` (bf16, safetensors) and a generation config."""
    import torch
    from transformers import GenerationConfig

    config.architectures = [model_cls.__name__]
    torch.manual_seed(SEED)
    model = model_cls(config).to(torch.bfloat16).eval()
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad).save_pretrained(out)
