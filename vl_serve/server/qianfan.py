"""Baidu Qianfan v2 clients: the ``/v2`` routes and the request fields vLLM has no twin for.

Qianfan's v2 API is OpenAI's shape under ``/v2``, so its clients (the OpenAI SDK with
``base_url=".../v2"``, curl on ``/v2/chat/completions``) need only the base URL changed:
``POST /v2/chat/completions`` is served as ``/v1/chat/completions`` and ``GET /v2/models`` as
``/v1/models``. Qianfan's own fields are handled one way each:

* ``penalty_score`` (Qianfan's repetition penalty, 1.0 to 2.0) becomes vLLM's
  ``repetition_penalty``, unless the request also sets that;
* ``web_search`` asking for a search (``enable: true``) is refused with a 400 naming the field:
  this server answers from the model alone, and a quietly unsearched answer would look like a
  searched one. ``web_search`` with ``enable: false`` asks for nothing and is dropped;
* ``user_id`` and ``safety`` are accepted and ignored: the answer carries a ``Warning`` header
  (``299 vl-serve "ignored Qianfan field(s): ..."``).
"""

from __future__ import annotations

from typing import Any, Final

from vl_serve.server.errors import RequestError

ROUTES: Final = {
    ("POST", "/v2/chat/completions"): "/v1/chat/completions",
    ("GET", "/v2/models"): "/v1/models",
}
IGNORED: Final = ("user_id", "safety")
_PENALTY_RANGE: Final = (1.0, 2.0)


def rewrite_request(req: dict[str, Any]) -> list[str]:
    """Put a Qianfan chat body in vLLM's terms in place; the names of the fields ignored.

    Raises RequestError for a search request and for badly typed Qianfan fields.
    """
    if "web_search" in req:
        search = req.pop("web_search")
        if search is not None and not isinstance(search, dict):
            raise RequestError(400, "`web_search` must be an object.", "web_search", "invalid_type")
        if search and search.get("enable"):
            raise RequestError(
                400,
                "`web_search` is not available on this server: answers come from the model "
                "alone. Remove the field or set web_search.enable to false.",
                "web_search",
                "unsupported_parameter",
            )
    if "penalty_score" in req:
        penalty = req.pop("penalty_score")
        low, high = _PENALTY_RANGE
        if penalty is not None:
            if (
                isinstance(penalty, bool)
                or not isinstance(penalty, int | float)
                or not low <= penalty <= high
            ):
                raise RequestError(
                    400,
                    f"`penalty_score` must be a number from {low} to {high}.",
                    "penalty_score",
                    "invalid_parameter",
                )
            req.setdefault("repetition_penalty", float(penalty))
    return [name for name in IGNORED if req.pop(name, None) is not None]


def warning_header(ignored: list[str]) -> tuple[bytes, bytes]:
    """The ``Warning`` header naming the ignored fields."""
    text = f'299 vl-serve "ignored Qianfan field(s): {", ".join(ignored)}"'
    return b"warning", text.encode()
