"""Helpers of the reliability tests: raw SSE streams, /metrics samples, a server's processes."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

MODEL = "tiny-qwen3-vl"


def chat_body(*, stream: bool, max_tokens: int = 8, **extra: Any) -> dict[str, Any]:
    """A chat request that generates exactly ``max_tokens`` tokens (EOS ignored)."""
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count to ten."}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
        **extra,
    }


@dataclass
class Outcome:
    """What one request got: status, headers, the SSE events or the JSON body, and timings."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    body: Any = None
    sent_at: float = 0.0
    headers_at: float = 0.0
    done_at: float = 0.0

    @property
    def finished(self) -> bool:
        """A stream that ended with a finish_reason, ``[DONE]`` and no error event."""
        if self.events[-1:] != ["[DONE]"] or any('"error"' in e for e in self.events):
            return False
        reasons = [
            choice.get("finish_reason")
            for event in self.events[:-1]
            for choice in json.loads(event).get("choices", [])
        ]
        return any(reasons)


def read_stream(resp: httpx.Response, outcome: Outcome) -> None:
    for line in resp.iter_lines():
        if line.startswith("data: "):
            outcome.events.append(line[6:])


def post(base_url: str, body: dict[str, Any], **headers: str) -> Outcome:
    """One request on a connection of its own; a stream is read to its end."""
    outcome = Outcome(sent_at=time.monotonic())
    with httpx.Client(timeout=120) as client:
        url = base_url + "/v1/chat/completions"
        with client.stream("POST", url, json=body, headers=headers) as resp:
            outcome.headers_at = time.monotonic()
            outcome.status = resp.status_code
            outcome.headers = dict(resp.headers)
            if resp.status_code == 200 and body.get("stream"):
                read_stream(resp, outcome)
            else:
                resp.read()
                outcome.body = resp.json()
    outcome.done_at = time.monotonic()
    return outcome


def samples(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    text = httpx.get(base_url + "/metrics", timeout=10).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sample ``name`` with exactly ``labels`` (0 when absent)."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def group_processes(pgid: int) -> list[psutil.Process]:
    """The live processes of process group ``pgid`` (zombies excluded)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def engine_core(pid: int) -> psutil.Process:
    """The EngineCore process below the server process ``pid``."""
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "EngineCore" in child.name() or "EngineCore" in " ".join(child.cmdline()):
                return child
    raise LookupError("no EngineCore process")
