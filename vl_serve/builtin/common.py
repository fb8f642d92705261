"""What every tiny model builder shares: a seeded BPE trainer, the real ids' layout, a weight saver.

All deterministic (fixed seeds), so a model built twice is the same model and a cache built on one
machine matches one built on another. :func:`place_tokens` puts a family's special and added
tokens at the ids the real tokenizer gives them, padding the vocabulary with placeholder tokens, so
a client that hard-codes an id (``stop_token_ids: [151645]``) means the same token as on the real
model. transformers, tokenizers and torch are imported inside the functions: importing
vl_serve.builtin stays cheap for the launcher.
"""

from __future__ import annotations

import json
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
    words: list[str],
    *,
    seed: int = SEED,
    vocab_size: int = 1024,
    lines: int = 3000,
    first: tuple[str, ...] = (),
) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on a seeded corpus of ``words``.

    Byte-level, so any text encodes and every id decodes. ``first`` takes ids 0, 1, ... (ERNIE's
    ``<unk>``, ``<s>``, ``</s>``); the other special and added tokens are placed afterwards by
    :func:`place_tokens`, with the kinds (special or not) of the real tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=list(first),
    )
    tok.train_from_iterator(_corpus(words, seed, lines), trainer=trainer)
    return tok


def place_tokens(tok: Any, size: int, tokens: dict[str, tuple[int, bool]]) -> Any:
    """``tok`` with exactly ``size`` ids: its BPE vocabulary first, each of ``tokens``
    (content -> (id, special)) at its id, placeholder tokens ``<|x{id}|>`` everywhere else.

    Every id is in the model vocabulary, so there is no gap for transformers to renumber an added
    token into, and every id decodes to text. The tokens are also registered as added tokens with
    their kind: special ones are skipped by ``skip_special_tokens``, the others (think and tool
    tags) survive decoding, as with the real tokenizers.
    """
    from tokenizers import Tokenizer

    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    reserved = {token_id for token_id, _ in tokens.values()}
    if max(reserved) >= size or len(reserved) != len(tokens):
        raise ValueError("token ids must be distinct and below the vocabulary size")
    bpe = sorted(vocab.items(), key=lambda item: item[1])
    fixed = {t: i for t, i in bpe if t in tokens}  # trained in as specials: ids must agree
    for content, token_id in fixed.items():
        if tokens[content][0] != token_id:
            raise ValueError(f"{content} has id {token_id}, not {tokens[content][0]}")
    if any(i in reserved for t, i in bpe if t not in fixed):
        raise ValueError("a reserved id is taken by a BPE token: train a smaller vocabulary")
    layout = {t: i for t, i in bpe}
    layout.update({content: token_id for content, (token_id, _) in tokens.items()})
    taken = set(layout.values())
    layout.update({f"<|x{i}|>": i for i in range(size) if i not in taken})
    data["model"]["vocab"] = dict(sorted(layout.items(), key=lambda item: item[1]))
    data["added_tokens"] = [
        {
            "id": token_id,
            "content": content,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": special,
        }
        for content, (token_id, special) in sorted(tokens.items(), key=lambda item: item[1][0])
    ]
    return Tokenizer.from_str(json.dumps(data))


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
