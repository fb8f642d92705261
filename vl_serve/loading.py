"""Config files -> validated pydantic models, every mistake as one line of a ConfigError.

Three steps, reporting with a :class:`ConfigError` that names the file, the field path, the bad
value and the fix of each mistake:

1. YAML parse (:func:`read_yaml`): a file that cannot be read or parsed is one mistake;
2. ``${VAR}`` / ``${VAR:-default}`` interpolation from the environment, strings only
   (:func:`interpolate`): every variable that is not set;
3. pydantic validation (:func:`validate`): every validation error, one line each, with those
   caused by an unset variable left out (already reported).

Nothing here knows vl-serve's fields: :mod:`vl_serve.config` passes its model in, so the schema
imports the loader and never the other way round.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from vl_serve.errors import ConfigError, raise_all

M = TypeVar("M", bound=BaseModel)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The YAML tree of a file; an unreadable file or bad syntax is a ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            "<file>", source, f"cannot read the file ({exc.strerror})", source
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "<file>"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(where, None, f"{problem}; fix the YAML syntax", source) from None


def interpolate(value: Any) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a YAML tree."""
    missing: list[ConfigError] = []
    value = _interpolate(value, "", missing)
    raise_all(missing)
    return value


def _interpolate(value: Any, path: str, missing: list[ConfigError]) -> Any:
    """``value`` interpolated; a variable that is not set is left as written and added to
    ``missing``."""
    if isinstance(value, dict):
        return {
            k: _interpolate(v, f"{path}.{k}" if path else str(k), missing) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", missing) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        missing.append(
            ConfigError(
                path or "<root>",
                match.group(0),
                f"environment variable {name} is not set; export it or write ${{{name}:-default}}",
            )
        )
        return match.group(0)

    return _VAR.sub(sub, value)


def validate(model: type[M], data: Any, source: str = "<config>") -> M:
    """Interpolate and validate a YAML tree as ``model``; every mistake is in the ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError("<root>", data, "the file must be a YAML mapping of fields", source)
    missing: list[ConfigError] = []
    data = _interpolate(data, "", missing)
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        unset = [m.field for m in missing]
        invalid = [e for e in _errors(model, data, exc) if not _under(e.field, unset)]
        raise ConfigError.many([*missing, *invalid]).with_source(source) from None
    if missing:
        raise ConfigError.many(missing).with_source(source)
    return result


def _errors(model: type[BaseModel], data: Any, exc: ValidationError) -> list[ConfigError]:
    """One ConfigError per field that pydantic refused.

    A field typed as a union (``str | list[str]``) fails once per member, each loc ending in the
    member's name (``api_key_env.str``); those become one mistake listing what the field accepts.
    """
    merged: dict[tuple[Any, ...], tuple[Any, list[str]]] = {}
    for error in exc.errors():
        loc = _data_loc(data, tuple(error["loc"]), keep_last=error["type"] == "missing")
        msg = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            fields = _fields_at(model, loc[:-1])
            msg = f"unknown field; allowed here: {', '.join(fields)}"
            value: Any = _lookup(data, loc)
        elif error["type"] == "missing":
            value = None
        else:
            value = error.get("input")
        _, msgs = merged.setdefault(loc, (value, []))
        if msg not in msgs:
            msgs.append(msg)
    return [ConfigError(_loc(loc), value, _either(msgs)) for loc, (value, msgs) in merged.items()]


def _either(msgs: list[str]) -> str:
    """``Input should be a valid string or a valid list`` from one message per union member."""
    prefix = "Input should be "
    if len(msgs) > 1 and all(m.startswith(prefix) for m in msgs):
        return prefix + " or ".join(m.removeprefix(prefix) for m in msgs)
    return "; ".join(msgs)


def _data_loc(data: Any, loc: tuple[Any, ...], *, keep_last: bool) -> tuple[Any, ...]:
    """``loc`` without the union member names pydantic puts in it: the parts naming no key or
    index of the data (a missing field's own name, ``keep_last``, is kept)."""
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        found = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if found:
            node = node[part]
        elif not (keep_last and i == len(loc) - 1):
            continue  # a union member's name
        out.append(part)
    return tuple(out)


def _under(field: str, paths: list[str]) -> bool:
    return any(field == p or field.startswith((f"{p}.", f"{p}[")) for p in paths)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) model at ``loc``, for an "unknown field" message."""
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)
