"""The models list without server paths: each card's ``root`` becomes the model's id.

vLLM's ``GET /v1/models`` sets ``root`` to the folder the weights were loaded from (a LoRA card's
to the adapter's folder), and vl-serve passes vLLM the resolved local folder, so the list would
show every client where the model lives on the server. No vLLM flag changes it; the answer is
rewritten on its way out instead.
"""

from __future__ import annotations

import json
from typing import Final

MODELS_PATH: Final = "/v1/models"


def without_paths(body: bytes) -> bytes:
    """The models list ``body`` with each card's ``root`` set to its ``id`` (``body`` itself when
    there is nothing to change)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    cards = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(cards, list):
        return body
    changed = False
    for card in cards:
        if isinstance(card, dict) and "root" in card and card["root"] != card.get("id"):
            card["root"] = card.get("id")
            changed = True
    if not changed:
        return body
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
