"""The ``reasoning:`` section of the config: how the thinking part of reasoning models is returned."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReasoningConfig(_Model):
    """How the thinking part of reasoning models is split and returned."""

    parser: str | None = Field(
        None,
        description=(
            "Reasoning parser name registered with vLLM (vl-serve adds 'qwen3_vl' and 'ernie45_vl'); "
            "null for no reasoning split."
        ),
    )
    default_enable_thinking: bool | None = Field(
        None,
        description=(
            "Server default for thinking when a request does not say (null: the chat template's default)."
        ),
    )
    response_field: Literal["reasoning", "reasoning_content", "both"] = Field(
        "both",
        description=(
            "Field carrying the thinking part in responses: vLLM's 'reasoning', FastDeploy/Qianfan's "
            "'reasoning_content', or both."
        ),
    )
