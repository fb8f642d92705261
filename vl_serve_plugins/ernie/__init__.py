"""ERNIE-4.5-VL on vLLM with transformers' native classes (no remote code).

:func:`register` (called from the plugin's ``register()`` in every vLLM process) points vLLM's
own architecture name at :class:`vl_serve_plugins.ernie.model.VLServeErnie45VLForConditionalGeneration`
by a "module:Class" string: nothing is imported until vLLM selects the model. It also registers
the published ``-PT`` layout's config and tokenizer classes with transformers
(:mod:`vl_serve_plugins.ernie.pt`), so those checkpoints load with ``trust_remote_code`` off.
"""

from __future__ import annotations

ARCHITECTURE = "Ernie4_5_VLMoeForConditionalGeneration"
MODEL_CLASS = "vl_serve_plugins.ernie.model:VLServeErnie45VLForConditionalGeneration"


def register() -> None:
    from vllm import ModelRegistry

    from vl_serve_plugins.ernie import pt

    ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS)
    pt.register()
