"""Import hook that lets a CUDA-built torchvision import beside torch+cpu (see tools/envfix.py).

Loaded from ``vl_serve_torchvision_fix.pth`` (written by ``make install`` only where the problem
exists). It costs one meta-path entry: nothing is imported until torchvision itself is. Just before
``torchvision._meta_registrations`` runs (after torchvision tried to load its compiled ``_C``), it
defines the schemas of ``torchvision::nms`` and ``torchvision::qnms`` if ``_C`` did not provide
them, so the fake-kernel registrations succeed. No kernel is defined: calling nms still fails, but
nothing on vLLM's path calls it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

_TARGET = "torchvision._meta_registrations"
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
}
_keep: list[Any] = []


def _define_missing_ops() -> None:
    import torch

    missing = [name for name in _SCHEMAS if not _op_exists(f"torchvision::{name}")]
    if not missing:
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        lib.define(_SCHEMAS[name])
    _keep.append(lib)  # the library must outlive this call


def _op_exists(qualname: str) -> bool:
    import torch

    try:
        return torch._C._dispatch_find_schema_or_throw(qualname, "") is not None
    except RuntimeError:
        return False


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        _define_missing_ops()
        self.inner.exec_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = getattr(finder, "find_spec", lambda *a: None)(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
