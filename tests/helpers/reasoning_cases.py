"""The reasoning-split cases every vl-serve reasoning parser must get right, as data.

Each case is one model reply: the rendered prompt (as the model family's chat template renders
it), the request's ``chat_template_kwargs``, the generated text, and the expected split. The same
split is expected streamed (any delta boundaries) and not streamed. Unit tests feed these through
the parsers directly; end-to-end tests can force ``output`` with structured outputs and check the
server's ``reasoning`` / ``content`` fields against the same expectations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ReasoningCase:
    id: str
    parser: str  # registry name of the reasoning parser
    prompt: str  # the rendered prompt; its tail is the generation prompt
    output: str  # generated text
    reasoning: str | None  # expected reasoning (None: no reasoning)
    content: str | None  # expected content (None: no content)
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    template: str = ""  # which chat template variant renders `prompt`
    # The request asks for structured output (a grammar) and no thinking mode: the answer part
    # must be held to the grammar (vl_serve.server.dialect.answer_directly).
    structured: bool = False


@dataclass(frozen=True)
class _Family:
    parser: str
    user: str  # a user turn with an image
    history: str  # an earlier exchange whose reasoning stayed in the prompt, then a user turn
    gen_open: str  # generation prompt of a template that opens the think block
    gen_closed: str  # ... that closes an empty think block (thinking off)
    gen_plain: str  # ... that leaves thinking to the model (or has none)


QWEN3_VL = _Family(
    parser="qwen3_vl",
    user="<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is 2+2?<|im_end|>\n",
    history=(
        "<|im_start|>user\nWhat is 1+1?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nOne and one.\n</think>\n\nIt is 2.<|im_end|>\n"
        "<|im_start|>user\nAnd 2+2?<|im_end|>\n"
    ),
    gen_open="<|im_start|>assistant\n<think>\n",
    gen_closed="<|im_start|>assistant\n<think>\n\n</think>\n\n",
    gen_plain="<|im_start|>assistant\n",
)

ERNIE45_VL = _Family(
    parser="ernie45_vl",
    user=(
        "<|begin_of_sentence|>User: Picture 1:<|IMAGE_START|><|image@placeholder|><|IMAGE_END|>"
        "What is 2+2?\n"
    ),
    history=(
        "<|begin_of_sentence|>User: What is 1+1?\n"
        "Assistant: <think>\nOne and one.\n</think>\n\n<response>\nIt is 2.\n</response>\n"
        "<|end_of_sentence|>User: And 2+2?\n"
    ),
    gen_open="Assistant: <think>\n",
    gen_closed="Assistant: <think>\n\n</think>\n\n",
    gen_plain="Assistant: ",
)

ON = {"enable_thinking": True}
OFF = {"enable_thinking": False}
THOUGHT = "The user asks for a sum.\n"
ANSWER = "The answer is 4."
TOOL_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def _common(f: _Family) -> list[ReasoningCase]:
    p = f.parser

    def case(
        id: str,
        prompt: str,
        kwargs: dict[str, Any],
        output: str,
        reasoning: str | None,
        content: str | None,
        template: str,
    ) -> ReasoningCase:
        return ReasoningCase(f"{p}-{id}", p, prompt, output, reasoning, content, kwargs, template)

    u, h = f.user, f.history
    return [
        # Thinking on, the template opened <think> (Qwen3-VL-Thinking, ERNIE enable_thinking).
        case(
            "template_opened_think",
            u + f.gen_open,
            ON,
            f"{THOUGHT}</think>\n\n{ANSWER}",
            THOUGHT,
            ANSWER,
            "thinking",
        ),
        case(
            "template_opened_think_no_kwargs",
            u + f.gen_open,
            {},
            f"{THOUGHT}</think>\n\n{ANSWER}",
            THOUGHT,
            ANSWER,
            "thinking",
        ),
        # The model opens its own think block (hybrid template, thinking on).
        case(
            "model_opens_think",
            u + f.gen_plain,
            ON,
            f"<think>\n{THOUGHT}</think>\n\n{ANSWER}",
            "\n" + THOUGHT,
            ANSWER,
            "hybrid",
        ),
        case(
            "model_opens_think_no_kwargs",
            u + f.gen_plain,
            {},
            f"<think>\n{THOUGHT}</think>\n\n{ANSWER}",
            "\n" + THOUGHT,
            ANSWER,
            "hybrid",
        ),
        # Thinking off: the template closed an empty think block; all content.
        case("thinking_off_template_closed", u + f.gen_closed, OFF, ANSWER, None, ANSWER, "hybrid"),
        case(
            "thinking_off_template_closed_no_kwargs",
            u + f.gen_closed,
            {},
            ANSWER,
            None,
            ANSWER,
            "hybrid",
        ),
        case(
            "thinking_off_answer_quotes_tags",
            u + f.gen_closed,
            OFF,
            "Close it with </think> after <think>.",
            None,
            "Close it with </think> after <think>.",
            "hybrid",
        ),
        # The model never thinks (Instruct templates have no think block).
        case("never_thinks", u + f.gen_plain, {}, ANSWER, None, ANSWER, "instruct"),
        case("never_thinks_thinking_off", u + f.gen_plain, OFF, ANSWER, None, ANSWER, "instruct"),
        case(
            "never_thinks_leading_newlines",
            u + f.gen_plain,
            {},
            "\n\n" + ANSWER,
            None,
            "\n\n" + ANSWER,
            "instruct",
        ),
        # Cut by max_tokens inside the thinking part.
        case(
            "truncated_in_thinking",
            u + f.gen_open,
            ON,
            "The user asks for a sum of two and",
            "The user asks for a sum of two and",
            None,
            "thinking",
        ),
        case(
            "truncated_in_model_think",
            u + f.gen_plain,
            ON,
            "<think>\nThe user asks",
            "\nThe user asks",
            None,
            "hybrid",
        ),
        # ... with no thinking switch in the request (the Thinking templates' default).
        case(
            "truncated_in_thinking_no_kwargs",
            u + f.gen_open,
            {},
            "The user asks for a sum of two and",
            "The user asks for a sum of two and",
            None,
            "thinking",
        ),
        case(
            "truncated_in_model_think_no_kwargs",
            u + f.gen_plain,
            {},
            "<think>\nThe user asks",
            "\nThe user asks",
            None,
            "hybrid",
        ),
        case(
            "truncated_never_thinks",
            u + f.gen_plain,
            {},
            "The answer is",
            None,
            "The answer is",
            "instruct",
        ),
        case(
            "truncated_right_after_think_end",
            u + f.gen_open,
            ON,
            f"{THOUGHT}</think>\n\n",
            THOUGHT,
            None,
            "thinking",
        ),
        # A tool call right after </think>.
        case(
            "tool_call_after_think",
            u + f.gen_open,
            ON,
            f"I need the weather.\n</think>\n\n{TOOL_CALL}",
            "I need the weather.\n",
            TOOL_CALL,
            "thinking",
        ),
        case("tool_call_thinking_off", u + f.gen_closed, OFF, TOOL_CALL, None, TOOL_CALL, "hybrid"),
        # Earlier turns' reasoning in the prompt must not matter.
        case(
            "history_template_opened_think",
            h + f.gen_open,
            ON,
            f"{THOUGHT}</think>\n\n{ANSWER}",
            THOUGHT,
            ANSWER,
            "thinking",
        ),
        case(
            "history_model_opens_think",
            h + f.gen_plain,
            ON,
            f"<think>\n{THOUGHT}</think>\n\n{ANSWER}",
            "\n" + THOUGHT,
            ANSWER,
            "hybrid",
        ),
        case("history_thinking_off", h + f.gen_closed, OFF, ANSWER, None, ANSWER, "hybrid"),
        case("history_never_thinks", h + f.gen_plain, {}, ANSWER, None, ANSWER, "instruct"),
        # Multi-byte text: the detokenizer holds back incomplete UTF-8, so text lags the ids.
        case(
            "unicode",
            u + f.gen_open,
            ON,
            "Zwei plus zwei … 二加二\n</think>\n\nVier ✓",
            "Zwei plus zwei … 二加二\n",
            "Vier ✓",
            "thinking",
        ),
    ]


def _ernie_only(f: _Family) -> list[ReasoningCase]:
    p, u = f.parser, f.user
    wrapped = f"{THOUGHT}</think>\n\n<response>\n{ANSWER}\n</response>\n"
    return [
        ReasoningCase(
            f"{p}-response_wrapper", p, u + f.gen_open, wrapped, THOUGHT, ANSWER, ON, "thinking"
        ),
        ReasoningCase(
            f"{p}-response_wrapper_no_kwargs",
            p,
            u + f.gen_open,
            wrapped,
            THOUGHT,
            ANSWER,
            {},
            "thinking",
        ),
        ReasoningCase(
            f"{p}-response_wrapper_model_opens_think",
            p,
            u + f.gen_plain,
            f"<think>\n{wrapped}",
            "\n" + THOUGHT,
            ANSWER,
            ON,
            "hybrid",
        ),
        ReasoningCase(
            f"{p}-response_wrapper_multiline",
            p,
            u + f.gen_open,
            f"{THOUGHT}</think>\n<response>\nLine one.\n\nLine two.\n</response>",
            THOUGHT,
            "Line one.\n\nLine two.",
            ON,
            "thinking",
        ),
        ReasoningCase(
            f"{p}-response_wrapper_truncated",
            p,
            u + f.gen_open,
            f"{THOUGHT}</think>\n\n<response>\nThe answer is",
            THOUGHT,
            "The answer is",
            ON,
            "thinking",
        ),
        # ERNIE-4.5-VL-Thinking's template switch.
        ReasoningCase(
            f"{p}-thinking_mode_open",
            p,
            u + f.gen_open,
            wrapped,
            THOUGHT,
            ANSWER,
            {"options": {"thinking_mode": "open"}},
            "thinking",
        ),
        ReasoningCase(
            f"{p}-thinking_mode_close",
            p,
            u + f.gen_closed,
            ANSWER,
            None,
            ANSWER,
            {"options": {"thinking_mode": "close"}},
            "hybrid",
        ),
    ]


JSON_ANSWER = '{"answer": 4}'


def _structured(f: _Family) -> list[ReasoningCase]:
    """Structured output and no thinking switch, one row per template: a direct answer (Instruct,
    hybrid) is held to the grammar from its first token, a Thinking template's answer after
    ``</think>``. The prompt is what the template renders once the request is answered directly
    (``enable_thinking: false``, which vl-serve writes for it)."""
    p, u = f.parser, f.user

    def case(
        id: str, prompt: str, output: str, reasoning: str | None, template: str
    ) -> ReasoningCase:
        return ReasoningCase(
            f"{p}-{id}", p, prompt, output, reasoning, JSON_ANSWER, OFF, template, structured=True
        )

    return [
        case("structured_direct_instruct", u + f.gen_plain, JSON_ANSWER, None, "instruct"),
        case("structured_direct_hybrid", u + f.gen_closed, JSON_ANSWER, None, "hybrid"),
        case(
            "structured_after_thinking",
            u + f.gen_open,
            f"{THOUGHT}</think>\n\n{JSON_ANSWER}",
            THOUGHT,
            "thinking",
        ),
    ]


CASES: list[ReasoningCase] = (
    _common(QWEN3_VL) + _structured(QWEN3_VL) + _common(ERNIE45_VL) + _ernie_only(ERNIE45_VL)
)
