"""The ``clients:`` section: how far the server meets clients written for other servers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClientsConfig(_Model):
    """Model names accepted and answer shapes kept for FastDeploy, Qianfan and tutorial clients."""

    model_names: Literal["lenient", "strict"] = Field(
        "lenient",
        description=(
            "Which 'model' values a request may send. 'lenient': the served names and aliases, "
            "FastDeploy's 'null' and 'default', or no model field at all (all mean the served "
            "model, and answers name the served name). 'strict': a served name or alias only, "
            "and the field is required (for deployments that serve several names, e.g. LoRA)."
        ),
    )
    response_field: bool = Field(
        True,
        description=(
            "Non-streamed chat answers also carry a top-level 'response' (the first choice's "
            "content), which the Qwen3-VL FastAPI tutorial's clients read; the OpenAI fields stay."
        ),
    )
