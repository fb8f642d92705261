"""Client wording for the error messages vLLM builds from Python's own exception text.

Some requests with a wrongly typed field get past vLLM's request models and fail deeper in, where
vLLM answers with the exception's text: ``'NoneType' object is not iterable``, ``TextEncodeInput
must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]``. Such a message tells the
client nothing about its request and something about the server's code, so it is replaced by a
sentence about the request; every other message is left as vLLM wrote it.
"""

from __future__ import annotations

import re
from typing import Final

_WRONG_TYPE: Final = (
    "A field of the request has a value of the wrong type (a number, null, list or object where "
    "the API expects another kind of value); check the request against the API reference."
)
_TOO_BIG: Final = "A number in the request is too large."
# Python's and the tokenizers' wording for a value of the wrong type, and for a number too large.
_PYTHON_WORDING: Final = (
    (
        re.compile(
            r"'\w+' object (?:is not (?:iterable|subscriptable|callable)|has no attribute)"
            r"|argument of type '\w+' is not iterable"
            r"|object of type '\w+' has no len\(\)"
            r"|unhashable type: '\w+'"
            r"|(?:list|string|tuple) indices must be integers"
            r"|can only concatenate \w+ \(not \"\w+\"\) to \w+"
            r"|unsupported operand type\(s\)"
            r"|not supported between instances of '\w+' and '\w+'"
            r"|expected (?:string|str|bytes-like object)"
            r"|must be (?:str|int|a string|an integer|real number), not \w+"
            r"|TextEncodeInput must be|TextInputSequence must be|PreTokenizedInputSequence must be"
            r"|argument 'text': '\w+' object cannot be converted"
        ),
        _WRONG_TYPE,
    ),
    (
        re.compile(
            r"Exceeds the limit \(\d+ digits\) for integer string conversion"
            r"|int too (?:big|large) to convert|Python int too large"
            r"|cannot convert float infinity to integer|cannot convert float NaN to integer"
        ),
        _TOO_BIG,
    ),
)


def client_message(message: str) -> str:
    """``message``, or a sentence about the request in place of Python's own wording."""
    for pattern, wording in _PYTHON_WORDING:
        if pattern.search(message):
            return wording
    return message
