"""Reasoning parser for ERNIE-4.5-VL (and its -Thinking variant).

The model writes ``reasoning\\n</think>\\n\\n<response>\\nanswer\\n</response>\\n`` or
``reasoning\\n</think>\\nanswer``, or ``</think>\\n\\n<tool_call>...``; the ``<response>`` wrapper
and the newlines around it are not content. The thinking switch is ``enable_thinking`` (ERNIE-4.5-VL)
or ``options.thinking_mode`` (ERNIE-4.5-VL-Thinking's template).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from vl_serve_plugins.reasoning.base import VLThinkingReasoningParser


class Ernie45VLReasoningParser(VLThinkingReasoningParser):
    parser_name: ClassVar[str] = "ernie45_vl"
    response_start_token = "<response>"
    response_end_token = "</response>"
    turn_boundary_tokens: ClassVar[tuple[str, ...]] = (
        "<|begin_of_sentence|>",
        "<|end_of_sentence|>",
    )

    @classmethod
    def _thinking_from_kwargs(cls, chat_template_kwargs: Mapping[str, Any]) -> bool | None:
        enabled = super()._thinking_from_kwargs(chat_template_kwargs)
        options = chat_template_kwargs.get("options")
        if enabled is None and isinstance(options, Mapping) and "thinking_mode" in options:
            return options["thinking_mode"] in ("open", "true", True)
        return enabled
