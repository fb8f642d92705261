"""Which ``model`` values a request may send, by ``clients.model_names``.

vLLM accepts a request whose ``model`` is one of the served names (the first is the one answers
report) or that has no ``model`` at all, and answers any other name with a 404. Clients of
servers that serve one model send what that server took: FastDeploy's examples send
``model="null"``, other clients ``"default"``. Under the ``lenient`` policy (the default) those two
mean the served model and are rewritten to its name before vLLM sees the request, so the answer
names the served model; every other unknown name is still vLLM's 404. Under ``strict`` nothing is
rewritten and a request without ``model`` is refused: a deployment that serves several names
(LoRA adapters) wants each request to say which.
"""

from __future__ import annotations

from typing import Any, Final

from vl_serve.server.errors import RequestError

LENIENT: Final = "lenient"
STRICT: Final = "strict"
# The names other servers' clients send for "the one model this server has".
PLACEHOLDERS: Final = frozenset({"null", "default"})


class ModelNames:
    """The policy of one server: ``apply`` normalises a parsed request body in place."""

    __slots__ = ("policy", "served")

    def __init__(self, policy: str, served: str | None) -> None:
        self.policy = policy
        self.served = served

    def apply(self, req: dict[str, Any]) -> bool:
        """True if ``model`` was rewritten; raises RequestError where the policy refuses it."""
        model = req.get("model")
        if self.policy == STRICT:
            if model is None:
                raise RequestError(
                    400,
                    "`model` is required on this server (clients.model_names: strict); "
                    "GET /v1/models lists the names it serves.",
                    "model",
                    "missing_parameter",
                )
            return False
        if (
            isinstance(model, str)
            and model in PLACEHOLDERS
            and self.served
            and model != self.served
        ):
            req["model"] = self.served
            return True
        return False
