"""vl-serve's vLLM plugin: reasoning parsers and the ERNIE-4.5-VL adapter, registered by name.

vLLM calls :func:`register` once in every one of its processes through the
``vllm.general_plugins`` entry point. Nothing happens at import time: registrations are by
"module:Class" strings and vLLM imports the classes lazily when they are selected. What vl-serve
changes in vLLM's own code is all in :mod:`vl_serve_plugins.patches`, applied by the classes that
need it when vLLM builds them.
"""

from __future__ import annotations

_registered = False

# Public registry names (treat a rename as breaking).
REASONING_PARSERS = {
    # name -> (module, class)
    "qwen3_vl": ("vl_serve_plugins.reasoning.qwen3_vl", "Qwen3VLReasoningParser"),
    "ernie45_vl": ("vl_serve_plugins.reasoning.ernie45_vl", "Ernie45VLReasoningParser"),
}


def register() -> None:
    """Entry point for ``vllm.general_plugins``; a second call is harmless."""
    global _registered
    if _registered:
        return
    _registered = True
    import logging

    from vllm.reasoning import ReasoningParserManager

    for name, (module, cls) in REASONING_PARSERS.items():
        ReasoningParserManager.register_lazy_module(name, module, cls)

    from vl_serve_plugins.ernie import ARCHITECTURE
    from vl_serve_plugins.ernie import register as register_ernie

    register_ernie()
    # A child of vLLM's "vllm" logger, so it goes wherever vLLM's own logs go.
    logging.getLogger("vllm.plugins.vl_serve").info(
        "vl-serve plugins registered: reasoning parsers %s; models %s",
        ", ".join(REASONING_PARSERS) or "-",
        ARCHITECTURE,
    )
