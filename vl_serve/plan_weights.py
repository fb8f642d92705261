"""Weight bytes of a model as vLLM allocates them, in total and per GPU under the TP/PP split.

Each family lists its tensors the way vLLM's model class creates them: fused QKV and gate-up
projections, the vocabulary padded to a multiple of 64, every expert of a MoE layer, routers,
norms, and the vision tower with its merger or resampler (buffers such as rotary caches are not
weights). A :class:`Part` holds the elements of the whole model and of one tensor-parallel rank;
pipeline stages take the decoder layers as vLLM's ``get_pp_indices`` splits them, the embedding
and vision tower on the first stage and the output head on the last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vl_serve.model_facts import ModelFacts

VOCAB_PADDING = 64  # vLLM's DEFAULT_VOCAB_PADDING_SIZE


@dataclass(frozen=True)
class Part:
    """Tensors of one kind: ``linear`` and ``expert`` weights (quantizable), ``plain`` (model
    dtype: embeddings, norms, biases, convolutions), ``fp32`` (kept in float32)."""

    kind: str
    total: int
    per_gpu: int


@dataclass
class Layout:
    first: list[Part] = field(default_factory=list)  # embedding, vision tower: first stage
    layers: list[list[Part]] = field(default_factory=list)
    last: list[Part] = field(default_factory=list)  # final norm: last stage
    head: list[Part] = field(default_factory=list)  # output head, shared when tied


def _col(out: int, inp: int, tp: int, bias: bool = False, kind: str = "linear") -> list[Part]:
    parts = [Part(kind, out * inp, out // tp * inp)]
    return parts + ([Part("plain", out, out // tp)] if bias else [])


def _row(out: int, inp: int, tp: int, bias: bool = False, kind: str = "linear") -> list[Part]:
    parts = [Part(kind, out * inp, out * (inp // tp))]
    return parts + ([Part("plain", out, out)] if bias else [])


def _plain(n: int, kind: str = "plain") -> Part:
    return Part(kind, n, n)


def _vocab(t: dict[str, Any], tp: int) -> Part:
    padded = -(-int(t["vocab_size"]) // VOCAB_PADDING) * VOCAB_PADDING
    return Part("plain", padded * int(t["hidden_size"]), padded // tp * int(t["hidden_size"]))


def _attention(t: dict[str, Any], tp: int, *, bias: bool, qk_norm: bool) -> list[Part]:
    """A decoder layer's attention (fused QKV, output projection, QK norms) and its two norms."""
    hidden, nq = int(t["hidden_size"]), int(t["num_attention_heads"])
    nkv = int(t.get("num_key_value_heads") or nq)
    hd = int(t.get("head_dim") or hidden // nq)
    kv_rank = max(1, nkv // tp)  # vLLM replicates KV heads when tp > nkv
    rows_total, rows_rank = (nq + 2 * nkv) * hd, (nq // tp + 2 * kv_rank) * hd
    parts = [Part("linear", rows_total * hidden, rows_rank * hidden)]
    parts += [Part("plain", rows_total, rows_rank)] if bias else []
    parts += _row(hidden, nq * hd, tp)
    parts += [_plain(2 * hd)] if qk_norm else []
    return [*parts, _plain(2 * hidden)]  # with the layer's two norms


def _mlp(hidden: int, inter: int, tp: int, bias: bool = False) -> list[Part]:
    return _col(2 * inter, hidden, tp, bias) + _row(hidden, inter, tp, bias)


def _experts(experts: int, hidden: int, inter: int, tp: int) -> list[Part]:
    return [
        Part("expert", experts * 2 * inter * hidden, experts * 2 * (inter // tp) * hidden),
        Part("expert", experts * hidden * inter, experts * hidden * (inter // tp)),
    ]


def _vit(depth: int, h: int, inter: int, tp: int, *, gated: bool, norm_bias: bool) -> list[Part]:
    """``depth`` ViT blocks: two norms, fused QKV and output projections, an (optionally gated) MLP."""
    block = [_plain(2 * h * (2 if norm_bias else 1))]
    block += _col(3 * h, h, tp, True) + _row(h, h, tp, True)
    block += (
        _mlp(h, inter, tp, True) if gated else _col(inter, h, tp, True) + _row(h, inter, tp, True)
    )
    return [Part(p.kind, p.total * depth, p.per_gpu * depth) for p in block]


def _decoder(layout: Layout, t: dict[str, Any], tp: int) -> None:
    layout.first.insert(0, _vocab(t, tp))
    layout.last.append(_plain(int(t["hidden_size"])))
    layout.head.append(_vocab(t, tp))


def _qwen3_vl(f: ModelFacts, tp: int) -> Layout:
    t, v = f.text, f.vision
    h, inter, merge = (
        int(v["hidden_size"]),
        int(v["intermediate_size"]),
        int(v["spatial_merge_size"]),
    )
    out, merged = int(v["out_hidden_size"]), int(v["hidden_size"]) * merge**2
    patch = 3 * int(v["temporal_patch_size"]) * int(v["patch_size"]) ** 2
    vision = [_plain(h * patch + h), _plain(int(v["num_position_embeddings"]) * h)]
    vision += _vit(int(v["depth"]), h, inter, tp, gated=False, norm_bias=True)
    for norm in [h] + [merged] * len(v.get("deepstack_visual_indexes") or []):
        vision += [_plain(2 * norm), *_col(merged, merged, tp, True), *_row(out, merged, tp, True)]
    layout = Layout(first=vision)
    hidden, experts = int(t["hidden_size"]), int(t.get("num_experts") or 0)
    step, dense_only = int(t.get("decoder_sparse_step") or 1), set(t.get("mlp_only_layers") or [])
    for i in range(int(t["num_hidden_layers"])):
        layer = _attention(t, tp, bias=False, qk_norm=True)
        if experts and i not in dense_only and (i + 1) % step == 0:
            inter_moe = int(t["moe_intermediate_size"])
            layer += [_plain(experts * hidden), *_experts(experts, hidden, inter_moe, tp)]
        else:
            layer += _mlp(hidden, int(t["intermediate_size"]), tp)
        layout.layers.append(layer)
    _decoder(layout, t, tp)
    return layout


def _qwen2_5_vl(f: ModelFacts, tp: int) -> Layout:
    t, v = f.text, f.vision
    h, merge, out = int(v["hidden_size"]), int(v["spatial_merge_size"]), int(v["out_hidden_size"])
    patch = 3 * int(v["temporal_patch_size"]) * int(v["patch_size"]) ** 2
    merged = h * merge**2
    vision = [_plain(h * patch)]
    vision += _vit(int(v["depth"]), h, int(v["intermediate_size"]), tp, gated=True, norm_bias=False)
    vision += [_plain(h), *_col(merged, merged, tp, True), *_row(out, merged, tp, True)]
    layout = Layout(first=vision)
    hidden = int(t["hidden_size"])
    for _ in range(int(t["num_hidden_layers"])):
        layer = _attention(t, tp, bias=True, qk_norm=False)
        layout.layers.append(layer + _mlp(hidden, int(t["intermediate_size"]), tp))
    _decoder(layout, t, tp)
    return layout


def _ernie45_vl(f: ModelFacts, tp: int) -> Layout:
    t, v = f.text, f.vision
    h, hidden = int(v["hidden_size"]), int(t["hidden_size"])
    merged = h * int(v["spatial_merge_size"]) ** 2
    vision = [_plain(h * 3 * int(v["patch_size"]) ** 2)]
    vision += _vit(int(v["depth"]), h, int(v["intermediate_size"]), tp, gated=False, norm_bias=True)
    vision += [_plain(2 * h)]
    # The resampler: spatial and temporal two-layer MLPs with norms, then the projection.
    temporal = merged * int(v.get("temporal_merge_size") or 2)
    for inp in (merged, merged, temporal, merged):
        vision += [_plain(merged * inp + merged)]
    vision += [_plain(4 * merged), _plain(hidden * merged + hidden), _plain(hidden)]
    layout = Layout(first=vision)
    experts = int(t.get("moe_num_experts") or 0)
    inters = t.get("moe_intermediate_size") or [0, 0]
    inters = list(inters) if isinstance(inters, list) else [inters, inters]
    shared = int(t.get("moe_num_shared_experts") or 0)
    kinds = t.get("mlp_layer_types") or ["dense"] + ["sparse"] * (int(t["num_hidden_layers"]) - 1)
    for kind in kinds:
        layer = _attention(t, tp, bias=False, qk_norm=False)
        if kind == "sparse" and experts:
            layer += [_plain(2 * experts, "fp32")]
            layer += _mlp(hidden, int(inters[0]) * shared, tp) if shared else []
            for inter in inters[:2]:
                layer += [_plain(experts * hidden, "fp32"), *_experts(experts, hidden, inter, tp)]
        else:
            layer += _mlp(hidden, int(t["intermediate_size"]), tp, bool(t.get("use_bias")))
        layout.layers.append(layer)
    _decoder(layout, t, tp)
    return layout


def _minicpmv(f: ModelFacts, tp: int) -> Layout:
    t, v = f.text, f.vision
    h, patch, hidden = int(v["hidden_size"]), int(v["patch_size"]), int(t["hidden_size"])
    vision = [_plain(h * 3 * patch**2 + h), _plain((int(v["image_size"]) // patch) ** 2 * h)]
    vision += _vit(
        int(v["num_hidden_layers"]), h, int(v["intermediate_size"]), tp, gated=False, norm_bias=True
    )
    vision += [_plain(2 * h)]
    # The resampler: learned queries, one cross-attention over the vision features, projection.
    vision += [_plain(int(f.config.get("query_num") or 64) * hidden), _plain(hidden * h)]
    vision += [
        _plain(4 * hidden * hidden + 4 * hidden),
        _plain(6 * hidden),
        _plain(hidden * hidden),
    ]
    layout = Layout(first=vision)
    for _ in range(int(t["num_hidden_layers"])):
        layer = _attention(t, tp, bias=True, qk_norm=False)
        layout.layers.append(layer + _mlp(hidden, int(t["intermediate_size"]), tp))
    _decoder(layout, t, tp)
    return layout


def _llama4(f: ModelFacts, tp: int) -> Layout:
    t, v = f.text, f.vision
    h, patch, hidden = int(v["hidden_size"]), int(v["patch_size"]), int(t["hidden_size"])
    positions = (int(v["image_size"]) // patch) ** 2 + 1
    vision = [_plain(h * 3 * patch**2), _plain(h), _plain(positions * h), _plain(4 * h)]
    vision += _vit(
        int(v["num_hidden_layers"]), h, int(v["intermediate_size"]), tp, gated=False, norm_bias=True
    )
    shuffled = int(h / float(v.get("pixel_shuffle_ratio") or 0.5) ** 2)
    adapter_in, adapter_out = int(v["projector_input_dim"]), int(v["projector_output_dim"])
    vision += [_plain(adapter_in * shuffled), _plain(adapter_out * adapter_in)]
    vision += [_plain(hidden * int(v["vision_output_dim"]))]
    layout = Layout(first=vision)
    experts, step = (
        int(t.get("num_local_experts") or 0),
        int(t.get("interleave_moe_layer_step") or 1),
    )
    inter = int(t["intermediate_size"])
    for i in range(int(t["num_hidden_layers"])):
        layer = _attention(t, tp, bias=False, qk_norm=False)
        if experts and step > 0 and (i + 1) % step == 0:
            layer += [_plain(experts * hidden), *_experts(experts, hidden, inter, tp)]
            layer += _mlp(hidden, inter, tp)  # the shared expert
        else:
            layer += _mlp(hidden, int(t.get("intermediate_size_mlp") or inter), tp)
        layout.layers.append(layer)
    _decoder(layout, t, tp)
    return layout


BUILDERS = {
    "qwen3_vl": _qwen3_vl,
    "qwen2_5_vl": _qwen2_5_vl,
    "ernie45_vl": _ernie45_vl,
    "minicpmv": _minicpmv,
    "llama4": _llama4,
}


def pp_split(layers: int, pp: int) -> list[int]:
    """Decoder layers per pipeline stage, as vLLM's ``get_pp_indices`` splits them."""
    parts = [layers // pp] * pp
    for i in range(2, layers % pp + 2):
        parts[-i] += 1
    return parts


@dataclass(frozen=True)
class Weights:
    total_bytes: int  # the whole model, once
    stage_bytes: list[int]  # one tensor-parallel rank of each pipeline stage
    stage_layers: list[int]

    @property
    def per_gpu_bytes(self) -> int:
        return max(self.stage_bytes)


def weights(facts: ModelFacts, sizes: dict[str, float], tp: int, pp: int) -> Weights:
    """Weight bytes of ``facts`` with ``sizes`` (bytes per element of each Part kind)."""
    layout = BUILDERS[facts.family](facts, tp)
    cost = {**sizes, "fp32": 4.0}

    def total(parts: list[Part], rank: bool = False) -> float:
        return sum((p.per_gpu if rank else p.total) * cost[p.kind] for p in parts)

    head = [] if facts.tied else layout.head
    everything = layout.first + layout.last + head + [p for ls in layout.layers for p in ls]
    split = pp_split(len(layout.layers), pp)
    stages, start = [], 0
    for stage, count in enumerate(split):
        parts = [p for layer in layout.layers[start : start + count] for p in layer]
        parts += layout.first if stage == 0 else []
        if stage == pp - 1:  # a tied head needs a copy of its own on a later stage
            parts += layout.last + (layout.head if not facts.tied or pp > 1 else [])
        stages.append(int(total(parts, rank=True)))
        start += count
    return Weights(int(total(everything)), stages, split)
