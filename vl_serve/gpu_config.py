"""The ``gpu:`` section of the config: the GPU a deployment targets, and the GPUs the planner knows.

``vl-serve plan`` sizes weights and KV cache against this GPU's memory, and ``vl-serve check``
warns when the plan says the config does not fit it. Nothing here starts or asks a GPU.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

MIB = 2**20
GIB = 2**30

# Memory per GPU as nvidia-smi reports it (memory.total, MiB). CUDA sees a few hundred MiB less
# (driver reservations): the planner's allowance (vl_serve.plan.ALLOWANCE_BYTES) covers that.
GPUS: dict[str, int] = {
    "A10G": 23028,
    "L4": 23034,
    "RTX-4090": 24564,
    "A100-40GB": 40960,
    "L40S": 46068,
    "A100-80GB": 81920,
    "H100-80GB": 81559,
    "H20": 97871,
    "H200": 143771,
    "B200": 183359,
}

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def known_gpu(name: str) -> str | None:
    """The table's spelling of a GPU name (case-insensitive), or None when it is not listed."""
    folded = name.strip().lower()
    return next((known for known in GPUS if known.lower() == folded), None)


def gpu_memory_bytes(name: str) -> int | None:
    """Memory of one GPU of the table, in bytes; None for a name the table does not list."""
    known = known_gpu(name)
    return GPUS[known] * MIB if known else None


def parse_size(text: str) -> int:
    """Bytes in ``80GiB``, ``80 GB``, ``81559MiB`` or a plain number of bytes (ValueError if not)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size; write e.g. 80GiB, 80GB or 81559MiB")
    number, unit = float(match.group(1)), (match.group(2) or "b").lower()
    return int(number * _UNITS[unit])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpuConfig(_Model):
    """The GPU the deployment targets: `vl-serve plan` sizes the model against its memory, and
    `vl-serve check` warns when the plan says it does not fit.

    Per GPU, the plan counts the weights as vLLM allocates them (every expert of a MoE model and
    the vision tower included, split over the tensor and pipeline parallel ranks) and an allowance
    of 2 GiB for activations, CUDA graphs, the CUDA context and driver reservations; the KV cache
    gets what is left of the memory x gpu_memory_utilization (or vllm_args.kv_cache_memory_bytes).
    A config fits when that KV cache holds at least one sequence of max_model_len.
    """

    name: str | None = Field(
        None,
        min_length=1,
        description=(
            "GPU model, one of " + ", ".join(GPUS) + " (case-insensitive); another name needs "
            "memory_gib. null: no GPU named (the plan checks no memory; check warns of nothing)."
        ),
    )
    memory_gib: float | None = Field(
        None,
        gt=0,
        description="Memory of one GPU in GiB; null: the named GPU's (nvidia-smi's memory.total).",
    )
    count: int | None = Field(
        None,
        ge=1,
        description=(
            "GPUs the deployment has, all nodes together; null: as many as tensor x pipeline x "
            "data parallel size use. The plan does not fit when the parallel sizes need more."
        ),
    )

    @model_validator(mode="after")
    def _known(self) -> GpuConfig:
        if self.name is not None and self.memory_gib is None and known_gpu(self.name) is None:
            raise ValueError(
                f"unknown GPU {self.name!r}; use one of {', '.join(GPUS)}, or give memory_gib"
            )
        if self.count is not None and not self.named:
            raise ValueError("count needs a GPU: give name (or memory_gib)")
        return self

    @property
    def named(self) -> bool:
        """Whether the config names a GPU (by name or by its memory)."""
        return self.name is not None or self.memory_gib is not None

    def memory_bytes(self) -> int | None:
        """Memory of one GPU in bytes; None when no GPU is named."""
        if self.memory_gib is not None:
            return int(self.memory_gib * GIB)
        return None if self.name is None else gpu_memory_bytes(self.name)
