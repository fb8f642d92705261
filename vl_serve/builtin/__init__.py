"""Embedded tiny random-weight models (``model: builtin:<name>``), built locally on first use.

They let ``make serve`` and the tests run vLLM end to end with no download: a real architecture,
a real tokenizer and processor, seeded random weights (a few million, nearly all of them the
embedding of the real-size vocabulary). Random weights make noise, not text: tests force output
with ``structured_outputs`` and assert on token counts, status codes and forced text.

- :mod:`~vl_serve.builtin.registry`: the names, the cache folder, building once under a lock;
- :mod:`~vl_serve.builtin.common`: the seeded BPE trainer, the real token-id layout, the weight
  saver;
- :mod:`~vl_serve.builtin.qwen3_vl`, :mod:`~vl_serve.builtin.ernie45_vl`,
  :mod:`~vl_serve.builtin.ernie45_vl_pt`: one module per model, each the real checkpoint's config
  with only the sizes scaled down, and the real family's special tokens at their ids.

The names below are re-exported for the launcher, the tests and the benchmarks.
"""

from vl_serve.builtin.common import SEED, save_random_model, train_byte_bpe
from vl_serve.builtin.qwen3_vl import (
    build_qwen_tokenizer,
    build_tiny_qwen3_vl,
    save_qwen3_vl_processor,
)
from vl_serve.builtin.registry import (
    BUILDER_VERSION,
    BUILDERS,
    cache_root,
    describe,
    ensure_built,
    model_dir,
)

__all__ = [
    "BUILDERS",
    "BUILDER_VERSION",
    "SEED",
    "build_qwen_tokenizer",
    "build_tiny_qwen3_vl",
    "cache_root",
    "describe",
    "ensure_built",
    "model_dir",
    "save_qwen3_vl_processor",
    "save_random_model",
    "train_byte_bpe",
]
