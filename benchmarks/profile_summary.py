"""Summarise py-spy raw profiles of vLLM's API server: share of the event loop's busy samples.

    python benchmarks/profile_summary.py build/profile/noparser.raw build/profile/vlserve.raw

Counts only the event-loop thread (stacks under ``Runner.run``) and drops samples where the loop
is idle, then prints each function's inclusive share for the serving path's main parts, and
vl-serve's own share: samples whose innermost vl-serve frame (``vl_serve/`` or the plugins) is
reached from the leaf without passing through vLLM, Starlette, uvicorn, asyncio or pydantic code,
i.e. time spent in vl-serve's code or in what it calls directly (json, re, binascii, ...). With
several files, that share is also given for all of them together.
"""

from __future__ import annotations

import collections
import re
import sys

KEYS = (
    "reason",
    "vl_serve",
    "parse_delta",
    "stream_generator",
    "DeltaMessage",
    "model_dump",
    "process_outputs",
    "detoken",
    "Parser",
    "send_wrapper",
    "media",
)


# Code that is not vl-serve's: an own-frame search from the leaf stops at the first of these.
FRAMEWORKS = (
    "vllm/",
    "starlette/",
    "fastapi/",
    "uvicorn/",
    "asyncio/",
    "pydantic",
    "uvloop",
    "h11",
    "httptools",
    "prometheus",
)
OWN = ("vl_serve/", "vl_serve_plugins/", "plugins/")


def own_frame(frames: list[str]) -> str | None:
    """The vl-serve frame a sample's time belongs to, or None (see the module docstring)."""
    for frame in reversed(frames):
        if any(key in frame for key in FRAMEWORKS):  # first: vllm/plugins/... is vLLM's
            return None
        if any(key in frame for key in OWN):
            return frame
    return None


def summarise(path: str, top: int = 25, totals: list[int] | None = None) -> None:
    busy = loop = 0
    incl: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    with open(path) as fh:
        for line in fh:
            stack, _, count = line.rstrip().rpartition(" ")
            n = int(count)
            frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
            if not any(f.startswith("Runner.run (") for f in frames):
                continue
            loop += n
            if frames[-1].startswith(("Runner.run (", "run (uvloop")):
                continue
            busy += n
            for frame in set(frames):
                incl[frame] += n
            mine = own_frame(frames)
            if mine is not None:
                own[mine] += n
    print(f"== {path}: event-loop samples {loop}, busy {busy} ({100 * busy / max(loop, 1):.0f}%)")
    shown = 0
    for name, count in incl.most_common():
        if any(key in name for key in KEYS):
            print(f"  {100 * count / max(busy, 1):5.1f}%  {name[:110]}")
            shown += 1
            if shown == top:
                break
    mine = sum(own.values())
    print(f"  vl-serve's own code: {mine} samples, {100 * mine / max(busy, 1):.2f}% of busy")
    for name, count in own.most_common(8):
        print(f"    {100 * count / max(busy, 1):5.2f}%  {name[:106]}")
    if totals is not None:
        totals[0] += busy
        totals[1] += mine


if __name__ == "__main__":
    sums = [0, 0]
    for arg in sys.argv[1:]:
        summarise(arg, totals=sums)
    if len(sys.argv) > 2:
        print(
            f"== all: busy {sums[0]}, vl-serve's own {sums[1]} ({100 * sums[1] / max(sums[0], 1):.2f}%)"
        )
