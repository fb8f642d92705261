"""Summarise py-spy raw profiles of vLLM's API server: share of the event loop's busy samples.

    python benchmarks/profile_summary.py build/profile/noparser.raw build/profile/vlserve.raw

Counts only the event-loop thread (stacks under ``Runner.run``) and drops samples where the loop
is idle, then prints each function's inclusive share for the serving path's main parts.
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


def summarise(path: str, top: int = 25) -> None:
    busy = loop = 0
    incl: collections.Counter[str] = collections.Counter()
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
    print(f"== {path}: event-loop samples {loop}, busy {busy} ({100 * busy / max(loop, 1):.0f}%)")
    shown = 0
    for name, count in incl.most_common():
        if any(key in name for key in KEYS):
            print(f"  {100 * count / max(busy, 1):5.1f}%  {name[:110]}")
            shown += 1
            if shown == top:
                break


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        summarise(arg)
