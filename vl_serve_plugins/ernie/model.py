"""vLLM's ERNIE-4.5-VL model taking transformers' native config and processor (no remote code).

Registered by :func:`vl_serve_plugins.ernie.register` under vLLM's own architecture name
``Ernie4_5_VLMoeForConditionalGeneration``, so it replaces vLLM's class for every ERNIE-4.5-VL
checkpoint. For the remote-code format (config with ``spatial_conv_size``, remote processor
returning ``images`` / ``grid_thw``) every override defers to vLLM's behaviour unchanged; for the
native format (``model_type: ernie4_5_vl_moe``, ``Ernie4_5_VLMoeProcessor``):

- the config gets the flat remote-code fields vLLM reads (:mod:`.config`);
- the multimodal processor runs the native image and video processors on the media only (they
  return normalised ``pixel_values`` / ``image_grid_thw`` / ``pixel_values_videos`` /
  ``video_grid_thw`` in the patch layout vLLM's vision tower takes) and vLLM expands each
  ``<|image@placeholder|>`` / ``<|video@placeholder|>`` of the prompt into
  ``<|IMAGE_PLACEHOLDER|>`` tokens, as with the remote processor;
- a ``-PT`` folder served without remote code (:mod:`.pt`) takes the native path too, with
  transformers' native image and video processors built from its ``preprocessor_config.json``;
- weights saved by transformers' native class (``model.vision_model.*``) load like the remote
  checkpoints' top-level ``vision_model.*``;
- vLLM's ERNIE rotary embedding gets the ``forward_cpu`` it lacks before the layers are built
  (:func:`vl_serve_plugins.patches.apply_ernie45_vl_rope_cpu`).

This module is imported by vLLM only when an ERNIE-4.5-VL model is selected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from transformers import BatchFeature
from vllm.config import VllmConfig
from vllm.model_executor.models.ernie45_vl import (
    Ernie4_5_VLDummyInputsBuilder,
    Ernie4_5_VLMoeForConditionalGeneration,
    Ernie4_5_VLProcessingInfo,
    Ernie4_5VLMultiModalProcessor,
)
from vllm.model_executor.models.utils import WeightsMapper
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalKwargsItems
from vllm.multimodal.parse import MultiModalDataItems
from vllm.multimodal.processing import BaseMultiModalProcessor, PromptReplacement, PromptUpdate
from vllm.multimodal.processing.processor import HFMultiModalInputs

from vl_serve_plugins.ernie import pt
from vl_serve_plugins.ernie.config import is_native, normalize_config
from vl_serve_plugins.patches import apply_ernie45_vl_rope_cpu

IMAGE_PROMPT_PLACEHOLDER = "<|image@placeholder|>"
VIDEO_PROMPT_PLACEHOLDER = "<|video@placeholder|>"
# vLLM's model marks vision tokens (MoE routing to the vision experts) by im_patch_id: images and
# videos both expand to it, as with the remote processor.
PATCH_TOKEN = "<|IMAGE_PLACEHOLDER|>"


def _is_native_processor(processor: Any) -> bool:
    return isinstance(processor, pt.PTMediaProcessor) or (
        type(processor).__name__ == "Ernie4_5_VLMoeProcessor"
    )


class VLServeErnie45VLProcessingInfo(Ernie4_5_VLProcessingInfo):
    def get_hf_config(self) -> Any:
        return normalize_config(self.ctx.model_config.hf_config)

    def get_hf_processor(self, **kwargs: object) -> Any:
        model_config = self.ctx.model_config
        if not model_config.trust_remote_code and pt.is_pt_folder(model_config.model):
            # The -PT folder's processor is remote code: its media processors, natively.
            return pt.media_processor(model_config.model, self.get_tokenizer())
        return super().get_hf_processor(**kwargs)

    def get_video_processor(self, **kwargs: object) -> Any:
        return self.get_hf_processor(**kwargs).video_processor


class VLServeErnie45VLMultiModalProcessor(Ernie4_5VLMultiModalProcessor):
    def _native(self) -> bool:
        return is_native(self.info.ctx.model_config.hf_config) or _is_native_processor(
            self.info.get_hf_processor()
        )

    def _get_hf_mm_inputs(
        self, mm_items: MultiModalDataItems, hf_kwargs: Mapping[str, object]
    ) -> HFMultiModalInputs:
        if not self._native():
            return super()._get_hf_mm_inputs(mm_items, hf_kwargs)
        # The media as vLLM parsed them (videos as (frames, metadata)); no dummy text.
        return BaseMultiModalProcessor._get_hf_mm_inputs(self, mm_items, hf_kwargs)

    def _call_hf_processor(
        self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]
    ) -> BatchFeature:
        if not self._native():
            return super()._call_hf_processor(hf_data, hf_kwargs)
        # Media only: vLLM tokenizes the prompt and expands the placeholders itself.
        out: dict[str, Any] = {}
        images: Sequence[Any] = hf_data.get("images") or []  # type: ignore[assignment]
        videos: Sequence[Any] = hf_data.get("videos") or []  # type: ignore[assignment]
        if images:
            image_processor = self.info.get_image_processor(**hf_kwargs)
            out.update(image_processor(images=list(images), return_tensors="pt"))
        if videos:
            frames, metadata = [], []
            for video in videos:
                array, meta = video if isinstance(video, tuple) else (video, None)
                frames.append(array)
                metadata.append(_video_metadata(meta, len(array)))
            video_processor = self.info.get_video_processor(**hf_kwargs)
            out.update(
                video_processor(
                    videos=frames,
                    video_metadata=metadata,
                    do_sample_frames=False,  # vLLM's loader already sampled them
                    return_tensors="pt",
                )
            )
        return BatchFeature(out)

    def _postprocess_hf_mm_data(
        self,
        hf_data: Mapping[str, object],
        hf_kwargs: Mapping[str, object],
        processed_data: BatchFeature,
    ) -> BatchFeature:
        if "images" in processed_data or not self._native():
            return super()._postprocess_hf_mm_data(hf_data, hf_kwargs, processed_data)
        # The native processors already normalised and split images from videos.
        return processed_data

    def _get_prompt_updates(
        self,
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, Any],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        # vLLM's reads the merge sizes from the remote processor's attributes; the config has the
        # same values for both formats.
        config = self.info.get_hf_config()
        tokenizer = self.info.get_tokenizer()
        merge_length = config.spatial_conv_size**2
        patch_id = tokenizer.convert_tokens_to_ids(PATCH_TOKEN)
        targets = {"image": IMAGE_PROMPT_PLACEHOLDER, "video": VIDEO_PROMPT_PLACEHOLDER}

        def replacement(item_idx: int, modality: str) -> list[int]:
            grid_thw = out_mm_kwargs[modality][item_idx][f"{modality}_grid_thw"].data
            assert isinstance(grid_thw, torch.Tensor)
            num = int(grid_thw.prod()) // merge_length
            if modality == "video":
                num //= config.temporal_conv_size
            return [patch_id] * num

        return [
            PromptReplacement(
                modality=modality,
                target=[tokenizer.convert_tokens_to_ids(targets[modality])],
                replacement=partial(replacement, modality=modality),
            )
            for modality in ("image", "video")
        ]


def _video_metadata(meta: Any, num_frames: int) -> Any:
    from transformers.video_utils import VideoMetadata

    meta = dict(meta or {})
    fps = meta.get("fps") or 2.0
    return VideoMetadata(
        total_num_frames=int(meta.get("total_num_frames") or num_frames),
        fps=float(fps),
        duration=meta.get("duration"),
        video_backend=meta.get("video_backend"),
        frames_indices=meta.get("frames_indices") or list(range(num_frames)),
    )


@MULTIMODAL_REGISTRY.register_processor(
    VLServeErnie45VLMultiModalProcessor,
    info=VLServeErnie45VLProcessingInfo,
    dummy_inputs=Ernie4_5_VLDummyInputsBuilder,
)
class VLServeErnie45VLForConditionalGeneration(Ernie4_5_VLMoeForConditionalGeneration):
    # transformers' native class saves the vision tower as model.vision_model.* (its reverse
    # weight conversion); the remote checkpoints have it at the top level.
    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={
            "model.vision_model.": "vision_model.",
            **Ernie4_5_VLMoeForConditionalGeneration.hf_to_vllm_mapper.orig_to_new_prefix,
        },
        orig_to_new_substr=Ernie4_5_VLMoeForConditionalGeneration.hf_to_vllm_mapper.orig_to_new_substr,
    )

    def __init__(self, vllm_config: VllmConfig, prefix: str = "") -> None:
        # Before super() builds the layers: each binds its platform method when it is built.
        apply_ernie45_vl_rope_cpu()
        normalize_config(vllm_config.model_config.hf_config)
        super().__init__(vllm_config=vllm_config, prefix=prefix)
