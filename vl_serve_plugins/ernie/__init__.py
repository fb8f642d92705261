"""ERNIE-4.5-VL on vLLM with transformers' native classes (no remote code).

:func:`register` (called from the plugin's ``register()`` in every vLLM process) points vLLM's
own architecture name at :class:`vl_serve_plugins.ernie.model.VLServeErnie45VLForConditionalGeneration`
by a "module:Class" string: nothing is imported until vLLM selects the model.
"""

from __future__ import annotations

ARCHITECTURE = "Ernie4_5_VLMoeForConditionalGeneration"
MODEL_CLASS = "vl_serve_plugins.ernie.model:VLServeErnie45VLForConditionalGeneration"


def register() -> None:
    from vllm import ModelRegistry

    ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS)
