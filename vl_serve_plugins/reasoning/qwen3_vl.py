"""Reasoning parser for Qwen3-VL: Instruct, Thinking and hybrid (``enable_thinking``) templates.

- Thinking: the template opens ``<think>`` in the prompt; the model writes ``...</think>answer``.
- Hybrid: the model opens ``<think>`` itself; ``enable_thinking=false`` makes the template close an
  empty think block in the prompt, and then everything is content.
- Instruct: no think block at all; everything is content.
"""

from __future__ import annotations

from typing import ClassVar

from vl_serve_plugins.reasoning.base import VLThinkingReasoningParser


class Qwen3VLReasoningParser(VLThinkingReasoningParser):
    parser_name: ClassVar[str] = "qwen3_vl"
    turn_boundary_tokens: ClassVar[tuple[str, ...]] = ("<|im_start|>", "<|im_end|>")
