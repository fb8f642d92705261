"""``vl-serve plan``: the GPU to plan for, and the plan as lines or as one JSON object (``--json``)."""

from __future__ import annotations

import json
from typing import Any

from vl_serve.config import VLServeConfig
from vl_serve.errors import ConfigError
from vl_serve.gpu_config import GIB, GPUS, gpu_memory_bytes, known_gpu, parse_size
from vl_serve.plan import ALLOWANCE_BYTES, Plan, Target, facts_for, plan


def _size(n: float) -> str:
    """Bytes in the largest binary unit that keeps them at 1 or more (``8.27 GiB``)."""
    for unit, scale in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,.0f} B"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def as_json_dict(p: Plan, config: str) -> dict[str, Any]:
    """Every figure of the plan; sizes in bytes, ``null`` where memory is not known."""
    target = p.target
    return {
        "config": config,
        "model": p.model,
        "source": p.source,
        "gpu": None
        if target is None
        else {"name": target.name, "memory_bytes": target.memory_bytes, "count": target.count},
        "gpus": p.gpus,
        "dtype": p.dtype,
        "quantization": p.quantization,
        "kv_cache_dtype": p.kv_cache_dtype,
        "weights_bytes": p.weights_bytes,
        "weights_bytes_per_gpu": p.weights_bytes_per_gpu,
        "allowance_bytes_per_gpu": ALLOWANCE_BYTES if target else None,
        "kv_bytes_per_token": p.kv_bytes_per_token,
        "kv_bytes_per_token_per_gpu": p.kv_bytes_per_token_per_gpu,
        "kv_cache_bytes_per_gpu": p.kv_cache_bytes_per_gpu,
        "block_size": p.block_size,
        "kv_tokens": p.kv_tokens,
        "max_model_len": p.max_model_len,
        "max_full_sequences": p.max_full_sequences,
        "max_num_seqs": p.max_num_seqs,
        "media": {
            "image_tokens": p.media.image,
            "video_tokens": p.media.video,
            "images": p.media.images,
            "videos": p.media.videos,
            "request_tokens": p.media.request,
            "fits_max_model_len": p.media_fits,
        },
        "fits": p.fits,
        "reasons": p.reasons,
        "changes": p.changes,
        "notes": p.notes,
    }


def _media(p: Plan) -> str:
    m = p.media
    items = [
        f"{n} {kind}{'s' if n != 1 else ''}"
        for kind, n in (("image", m.images), ("video", m.videos))
        if n
    ]
    sizes = [f"an image up to {m.image:,} tokens"] if m.image else []
    sizes += [f"a video up to {m.video:,}"] if m.video else []
    if not items:
        return "media: none allowed"
    verdict = (
        f"fits max_model_len {p.max_model_len:,}"
        if p.media_fits
        else f"more than max_model_len {p.max_model_len:,}: vLLM refuses such a request; lower "
        "limit_mm_per_prompt or the processor's max_pixels, or raise max_model_len"
    )
    return f"media: {', '.join(sizes)}; the worst request ({', '.join(items)}) is {m.request:,} tokens: {verdict}"


def text(p: Plan, config: str) -> list[str]:
    """The plan as lines for a terminal."""
    t = p.target
    where = "no GPU named (memory not checked)"
    if t is not None:
        memory = _size(t.memory_bytes) if t.memory_bytes else "memory unknown"
        where = f"{p.gpus} x {t.name} ({memory} each)"
    quant = f", {p.quantization}" if p.quantization else ""
    lines = [
        f"plan for {config}: {p.model} on {where}",
        f"  facts: {p.source}",
        f"  weights: {_size(p.weights_bytes)} ({p.dtype}{quant}), "
        f"{_size(p.weights_bytes_per_gpu)} per GPU (all experts and the vision tower included)",
        f"  KV cache: {_size(p.kv_bytes_per_token)} per token (KV dtype {p.kv_cache_dtype}), "
        f"{_size(p.kv_bytes_per_token_per_gpu)} per token per GPU, blocks of {p.block_size} tokens",
    ]
    if p.kv_cache_bytes_per_gpu is not None:
        lines.append(f"  KV cache memory: {_size(max(p.kv_cache_bytes_per_gpu, 0))} per GPU")
        if t is not None and t.memory_bytes and p.explicit_kv is None:
            lines[-1] += (
                f" = {p.utilization:g} x {_size(t.memory_bytes)} - {_size(p.weights_bytes_per_gpu)} "
                f"weights - {_size(ALLOWANCE_BYTES)} allowance (activations, CUDA graphs, CUDA context)"
            )
        elif p.explicit_kv is not None:
            lines[-1] += " (vllm_args.kv_cache_memory_bytes)"
        full = _plural(p.max_full_sequences or 0, "sequence")
        seqs = f"{full} of max_model_len {p.max_model_len:,} at once"
        if p.max_num_seqs is not None:
            seqs += f" (max_num_seqs {p.max_num_seqs})"
        lines.append(f"  KV tokens: {p.kv_tokens:,}: {seqs}")
    else:
        lines.append("  KV tokens: unknown (name a GPU, or set vllm_args.kv_cache_memory_bytes)")
    lines.append("  " + _media(p))
    lines += [f"  note: {note}" for note in p.notes]
    if p.fits is None:
        lines.append("verdict: unknown without a GPU (--gpu NAME or --gpu-memory SIZE)")
    elif p.fits:
        lines.append("verdict: fits")
    else:
        lines.append("verdict: does not fit: " + "; ".join(p.reasons))
        for c in p.changes:
            lines.append(
                f"  fits with {c['field']}: {c['value']} ({_plural(c['gpus'], 'GPU')}, "
                f"{c['kv_tokens']:,} KV tokens, {_plural(c['max_full_sequences'], 'full sequence')})"
            )
        if not p.changes:
            lines.append("  no single change tried fits (shorter context, FP8, more TP)")
    return lines


def target(cfg: VLServeConfig, gpu: str | None, gpu_memory: str | None) -> Target | None:
    """The GPU to plan for: ``--gpu`` or ``--gpu-memory`` over the config's ``gpu:``."""
    if gpu is not None:
        name = known_gpu(gpu)
        if name is None:
            fix = f"unknown GPU; use one of {', '.join(GPUS)}, or --gpu-memory SIZE"
            raise ConfigError("--gpu", gpu, fix, "<command line>")
        return Target(name, gpu_memory_bytes(name), cfg.gpu.count)
    if gpu_memory is not None:
        try:
            return Target(f"GPU of {gpu_memory}", parse_size(gpu_memory), cfg.gpu.count)
        except ValueError as exc:
            raise ConfigError("--gpu-memory", gpu_memory, str(exc), "<command line>") from None
    return Target.of(cfg.gpu)


def run(
    cfg: VLServeConfig, source: str, *, gpu: str | None, gpu_memory: str | None, as_json: bool
) -> int:
    """Print the plan of ``cfg`` (an embedded model is built first); 1 when it does not fit."""
    where = target(cfg, gpu, gpu_memory)
    try:
        result = plan(cfg, facts_for(cfg, build=True), where)
    except ConfigError as err:
        raise err.with_source(source) from None
    print(
        json.dumps(as_json_dict(result, source), indent=2)
        if as_json
        else "\n".join(text(result, source))
    )
    return 1 if result.fits is False else 0
