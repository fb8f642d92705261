"""The few request fields whose type vLLM's request models assume before they validate them.

vLLM's ``mode="before"`` validators run on the raw JSON, so a wrongly typed value there raises
Python's own error instead of a validation error: ``structured_outputs: 5`` gives a 500 with a
traceback in the log (``'int' object has no attribute 'get'``), ``messages: null`` a 400 saying
``'NoneType' object is not iterable``, and a ``tool_choice`` naming a function with ``tools``
whose entries lack ``function.name`` a 500 (``KeyError``). These fields are checked here, on the
routes whose bodies are vLLM's chat or completion requests, with a 400 that names the field;
everything else is left to vLLM's validation. ``model`` is bounded on every route: vLLM writes
an unknown model's name into an error log line.
"""

from __future__ import annotations

from typing import Any, Final

from vl_serve.server.errors import RequestError

_MAX_MODEL_CHARS: Final = 512


def _wrong(param: str, what: str) -> RequestError:
    return RequestError(400, f"`{param}` must be {what}.", param, "invalid_type")


def check_any(req: dict[str, Any]) -> None:
    """Checks for a JSON object body on any route."""
    model = req.get("model")
    if isinstance(model, str) and len(model) > _MAX_MODEL_CHARS:
        raise RequestError(
            400,
            f"`model` is longer than {_MAX_MODEL_CHARS} characters; no model has such a name.",
            "model",
            "invalid_parameter",
        )


def check_completion(req: dict[str, Any]) -> None:
    """Checks for a completion request body (vLLM's CompletionRequest)."""
    outputs = req.get("structured_outputs")
    if outputs is not None and not isinstance(outputs, dict):
        raise _wrong("structured_outputs", "an object")


def check_chat(req: dict[str, Any]) -> None:
    """Checks for a chat request body (vLLM's ChatCompletionRequest, TokenizeChatRequest)."""
    check_completion(req)
    if "messages" in req and not isinstance(req["messages"], list):
        raise _wrong("messages", "a list of messages")
    tools = req.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _wrong("tools", "a list of tools")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _wrong(f"tools[{i}].function.name", "a string (the function's name)")
