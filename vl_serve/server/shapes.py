"""What each route's JSON body is: chat-shaped, completion-shaped, or a shape whose media is refused.

* ``chat``: ``messages`` as on ``/v1/chat/completions`` (a list of conversations on the batch
  route). The FastDeploy/Qianfan dialect is rewritten with the chat template in mind and every
  media item goes through :func:`vl_serve.media.prepare_request`.
* ``completion``: a prompt, no media items; the dialect is rewritten (no chat template) and client
  processor kwargs are checked.
* ``either``: a chat body when it has a ``messages`` list, else a completion body (SageMaker's
  ``/invocations`` tries vLLM's chat request first; ``/tokenize`` takes both).
* every other route: media shapes that vl-serve does not read (Responses ``input_image``,
  Anthropic image blocks, ``/v1/systemone`` image lists, pooling inputs): a body that carries
  media is refused (:func:`vl_serve.media.refuse_unread_media`), so no item reaches vLLM
  unchecked.

``answers`` says whether the route answers with chat completions, whose ``reasoning`` key gets
its ``reasoning_content`` twin (:mod:`vl_serve.server.reasoning_content`).
"""

from __future__ import annotations

from typing import Final, NamedTuple

CHAT: Final = "chat"
COMPLETION: Final = "completion"
EITHER: Final = "either"
OTHER: Final = "other"


class Shape(NamedTuple):
    """A route's body shape and whether it answers with chat completions."""

    kind: str
    answers: bool


CHAT_PATH: Final = "/v1/chat/completions"
COMPLETIONS_PATH: Final = "/v1/completions"
MEDIA_ROUTE: Final = CHAT_PATH  # the route to name when media is refused elsewhere

_SHAPES: Final = {
    CHAT_PATH: Shape(CHAT, True),
    "/v1/chat/completions/batch": Shape(CHAT, True),
    "/v1/chat/completions/render": Shape(CHAT, False),
    COMPLETIONS_PATH: Shape(COMPLETION, False),
    "/v1/completions/render": Shape(COMPLETION, False),
    "/invocations": Shape(EITHER, True),
    "/tokenize": Shape(EITHER, False),
}
_OTHER: Final = Shape(OTHER, False)


def shape_of(path: str) -> Shape:
    """The body shape of the route at ``path`` (``root_path`` removed)."""
    return _SHAPES.get(path, _OTHER)
