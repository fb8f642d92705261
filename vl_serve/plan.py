"""Capacity plan of a config: weights, KV cache and media tokens against the target GPU's memory.

Per GPU, vLLM gives ``gpu_memory_utilization`` of the memory to the weights, the activations of
its profiling run, CUDA graphs and the KV cache; the planner counts the weights as vLLM allocates
them (vl_serve.plan_weights), a stated allowance of :data:`ALLOWANCE_BYTES` for everything else,
and the KV cache in the rest (or ``vllm_args.kv_cache_memory_bytes``, which vLLM then uses as is).
KV cache bytes per token are 2 (K and V) x layers x KV heads x head size x KV dtype size; layers
with chunked or sliding-window attention are counted as full attention (fewer tokens, never more).
Tokens come in whole blocks of ``block_size`` (16 on GPUs, 128 on CPUs); a sequence of
``max_model_len`` takes ceil(max_model_len / block_size) blocks. When a config does not fit, the
plan lists the single changes that make it fit, each re-planned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vl_serve import builtin as builtin_models
from vl_serve.config import VLServeConfig
from vl_serve.errors import ConfigError
from vl_serve.gpu_config import GIB, GpuConfig
from vl_serve.model_facts import ModelFacts, find
from vl_serve.plan_media import MediaTokens, media_tokens
from vl_serve.plan_weights import weights

ALLOWANCE_BYTES = 2 * GIB  # per GPU: activations, CUDA graphs, CUDA context, driver reservations
VLLM_UTILIZATION = 0.92  # vLLM's default gpu_memory_utilization
GPU_BLOCK, CPU_BLOCK = 16, 128
_DTYPES = {"half": 2, "float16": 2, "bfloat16": 2, "float": 4, "float32": 4}
_FP8 = {"fp8", "fbgemm_fp8", "ptpc_fp8", "modelopt", "fp8_per_block"}
_INT4 = {"awq", "awq_marlin", "gptq", "gptq_marlin", "bitsandbytes", "compressed-tensors"}
# KV cache dtypes by bytes per element; any other name is counted at the model dtype (noted).
_KV_BYTES = {
    "fp8": 1.0,
    "fp8_e4m3": 1.0,
    "fp8_e5m2": 1.0,
    "fp8_inc": 1.0,
    "fp8_per_token_head": 1.0,
}
_KV_BYTES |= {"int8_per_token_head": 1.0, "int4_per_token_head": 0.5, "nvfp4": 0.5}
_KV_BYTES |= {"float16": 2.0, "bfloat16": 2.0}


@dataclass(frozen=True)
class Target:
    """The GPUs planned for: one GPU's memory (None: not checked) and how many there are."""

    name: str
    memory_bytes: int | None
    count: int | None = None

    @classmethod
    def of(cls, gpu: GpuConfig) -> Target | None:
        """The GPU a config names (None: it names none)."""
        if not gpu.named:
            return None
        return cls(gpu.name or "GPU", gpu.memory_bytes(), gpu.count)


@dataclass
class Plan:
    model: str
    source: str
    target: Target | None
    gpus: int
    dtype: str
    quantization: str | None
    kv_cache_dtype: str
    weights_bytes: int
    weights_bytes_per_gpu: int
    kv_bytes_per_token: int
    kv_bytes_per_token_per_gpu: int
    block_size: int
    utilization: float
    explicit_kv: int | None
    kv_cache_bytes_per_gpu: int | None
    kv_tokens: int | None
    max_model_len: int
    max_full_sequences: int | None
    max_num_seqs: int | None
    media: MediaTokens
    fits: bool | None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def media_fits(self) -> bool:
        """Whether the worst request's media tokens leave room in ``max_model_len``."""
        return self.media.request < self.max_model_len


def facts_for(cfg: VLServeConfig, *, build: bool) -> ModelFacts:
    """The model's facts; an embedded tiny model is built first with ``build``."""
    name = cfg.builtin_name
    if name is None:
        return find(cfg.model)
    folder = builtin_models.ensure_built(name) if build else builtin_models.model_dir(name)
    return find(cfg.model, Path(folder))


def _dtype(cfg: VLServeConfig, facts: ModelFacts) -> str:
    dtype: str = cfg.dtype or "auto"
    if dtype == "auto":  # vLLM's auto: the checkpoint's dtype, float32 served as bfloat16
        dtype = facts.torch_dtype if facts.torch_dtype in _DTYPES else "bfloat16"
        return "bfloat16" if _DTYPES[dtype] == 4 else dtype
    return dtype


def _quantization(cfg: VLServeConfig, facts: ModelFacts) -> tuple[str | None, float | None]:
    """The method and its bytes per quantized weight (None: not modelled)."""
    declared = facts.config.get("quantization_config") or {}
    method = cfg.quantization or declared.get("quant_method")
    if method is None:
        return None, None
    bits = int(declared.get("bits") or 4)
    if method in _FP8 or (method == "compressed-tensors" and "fp8" in str(declared).lower()):
        return method, 1.0
    if method == "experts_int8":
        return method, 1.0
    if method in _INT4:  # group-wise: a 16-bit scale and zero per group of group_size weights
        return method, bits / 8 + 4 / int(declared.get("group_size") or 128)
    return method, None


def compute(cfg: VLServeConfig, facts: ModelFacts, target: Target | None) -> Plan:
    """The plan of ``cfg`` on ``target`` (None: no GPU named; memory is then not checked)."""
    tp, pp = cfg.tensor_parallel_size, cfg.pipeline_parallel_size
    dtype = _dtype(cfg, facts)
    dtype_bytes = _DTYPES[dtype]
    method, qbytes = _quantization(cfg, facts)
    notes: list[str] = []
    if method is not None and qbytes is None:
        notes.append(f"quantization {method!r} is not modelled: weights counted as {dtype}")
    linear = qbytes if qbytes is not None and method != "experts_int8" else dtype_bytes
    expert = qbytes if qbytes is not None else dtype_bytes
    w = weights(facts, {"plain": dtype_bytes, "linear": linear, "expert": expert}, tp, pp)

    t = facts.text
    heads = int(t["num_attention_heads"])
    kv_heads = int(t.get("num_key_value_heads") or heads)
    head_dim = int(t.get("head_dim") or int(t["hidden_size"]) // heads)
    kv_dtype = str(cfg.vllm_args.get("kv_cache_dtype") or "auto")
    kv_bytes = _KV_BYTES.get(kv_dtype, float(dtype_bytes))
    if kv_dtype != "auto" and kv_dtype not in _KV_BYTES:
        notes.append(f"kv_cache_dtype {kv_dtype!r} is not modelled: counted as {dtype}")
    if t.get("attention_chunk_size") or t.get("sliding_window"):
        notes.append("chunked/sliding-window attention layers counted as full attention")
    per_layer = 2 * head_dim * kv_bytes
    kv_per_token = int(per_layer * kv_heads * int(t["num_hidden_layers"]))
    stage_per_token = [int(per_layer * max(1, kv_heads // tp) * n) for n in w.stage_layers]

    block = int(cfg.vllm_args.get("block_size") or (GPU_BLOCK if target else CPU_BLOCK))
    max_len = cfg.max_model_len or int(t.get("max_position_embeddings") or 0)
    explicit = cfg.vllm_args.get("kv_cache_memory_bytes")
    memory = target.memory_bytes if target else None
    util = cfg.gpu_memory_utilization or VLLM_UTILIZATION
    reasons: list[str] = []
    if explicit is not None:
        kv_memory: list[int] | None = [int(explicit)] * pp
        if memory is not None and w.per_gpu_bytes + int(explicit) + ALLOWANCE_BYTES > memory:
            reasons.append("weights, kv_cache_memory_bytes and the allowance exceed the GPU memory")
    elif memory is not None:
        kv_memory = [int(memory * util) - b - ALLOWANCE_BYTES for b in w.stage_bytes]
        if min(kv_memory) <= 0:
            reasons.append(
                f"weights ({_gib(w.per_gpu_bytes)} per GPU) and the allowance "
                f"({_gib(ALLOWANCE_BYTES)}) exceed {util:g} of {_gib(memory)}"
            )
    else:
        kv_memory = None
    tokens = blocks = sequences = None
    if kv_memory is not None:
        blocks = min(
            max(m, 0) // (block * b) for m, b in zip(kv_memory, stage_per_token, strict=True) if b
        )
        tokens, sequences = blocks * block, blocks // -(-max_len // block)
        if sequences < 1 and not reasons:
            reasons.append(
                f"the KV cache holds {tokens:,} tokens, less than max_model_len {max_len:,}"
            )
    gpus = tp * pp * cfg.data_parallel_size
    if target and target.count is not None and gpus > target.count:
        reasons.append(
            f"tensor x pipeline x data parallel size need {gpus} GPUs; gpu.count is {target.count}"
        )
    fits = None if kv_memory is None else not reasons
    return Plan(
        model=cfg.model,
        source=facts.source,
        target=target,
        gpus=gpus,
        dtype=dtype,
        quantization=method,
        kv_cache_dtype=kv_dtype if kv_dtype != "auto" else f"auto ({dtype})",
        weights_bytes=w.total_bytes,
        weights_bytes_per_gpu=w.per_gpu_bytes,
        kv_bytes_per_token=kv_per_token,
        kv_bytes_per_token_per_gpu=max(stage_per_token),
        block_size=block,
        utilization=util,
        explicit_kv=None if explicit is None else int(explicit),
        kv_cache_bytes_per_gpu=None if kv_memory is None else max(min(kv_memory), 0),
        kv_tokens=tokens,
        max_model_len=max_len,
        max_full_sequences=sequences,
        max_num_seqs=cfg.max_num_seqs,
        media=media_tokens(facts, cfg),
        fits=fits,
        reasons=reasons,
        notes=notes,
    )


def _with(cfg: VLServeConfig, update: dict[str, Any]) -> VLServeConfig:
    if "kv_cache_dtype" in update:
        update = {"vllm_args": {**cfg.vllm_args, "kv_cache_dtype": update["kv_cache_dtype"]}}
    return cfg.model_copy(update=update)


def _changes(
    cfg: VLServeConfig, facts: ModelFacts, target: Target, base: Plan
) -> list[dict[str, Any]]:
    """Single changes that make a config fit: shorter context, FP8 KV cache, FP8 weights, more TP."""
    options: list[dict[str, Any]] = []
    if base.kv_tokens and base.kv_tokens >= 1024:
        options.append({"max_model_len": base.kv_tokens // 1024 * 1024})
    if base.kv_cache_dtype.startswith("auto"):
        options.append({"kv_cache_dtype": "fp8"})
    if base.quantization is None:
        options.append({"quantization": "fp8"})
    heads = int(facts.text["num_attention_heads"])
    kv = int(facts.text.get("num_key_value_heads") or heads)
    for n in (2, 4, 8, 16):  # vLLM shards heads evenly; KV heads split or replicate evenly
        if n > cfg.tensor_parallel_size and heads % n == 0 and (kv % n == 0 or n % kv == 0):
            options.append({"tensor_parallel_size": n})
    out: list[dict[str, Any]] = []
    for update in options:
        more_tp = "tensor_parallel_size" in update
        if more_tp and any(c["field"] == "tensor_parallel_size" for c in out):
            continue
        # More tensor parallelism takes more GPUs than gpu.count, if it names one: said in "gpus".
        trial_target = Target(target.name, target.memory_bytes, None) if more_tp else target
        trial = compute(_with(cfg, update), facts, trial_target)
        if trial.fits:
            ((key, value),) = update.items()
            field_name = f"vllm_args.{key}" if key == "kv_cache_dtype" else key
            out.append(
                {
                    "field": field_name,
                    "value": value,
                    "gpus": trial.gpus,
                    "kv_tokens": trial.kv_tokens,
                    "max_full_sequences": trial.max_full_sequences,
                }
            )
    return out


def plan(cfg: VLServeConfig, facts: ModelFacts, target: Target | None) -> Plan:
    """The plan of ``cfg``, with the changes that make it fit when it does not."""
    result = compute(cfg, facts, target)
    if result.fits is False and target is not None:
        result.changes = _changes(cfg, facts, target, result)
    return result


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def check_warning(cfg: VLServeConfig) -> str | None:
    """What ``vl-serve check`` warns about: the plan on the named GPU does not fit (None: it
    fits, names no GPU, or cannot be planned here, e.g. an embedded model not built yet)."""
    if not cfg.gpu.named:
        return None
    try:
        facts = facts_for(cfg, build=False)
        result = plan(cfg, facts, Target.of(cfg.gpu))
    except (ConfigError, KeyError, TypeError, ValueError):  # `vl-serve plan` says why
        return None
    if result.fits is not False:
        return None
    fix = result.changes[0] if result.changes else None
    hint = f"; e.g. set {fix['field']}: {fix['value']}" if fix else ""
    return f"does not fit {cfg.gpu.name or 'the GPU'}: {'; '.join(result.reasons)}{hint} (see `vl-serve plan`)"
