"""User-facing errors of the launcher (config mistakes): one line per mistake, exit code 2."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EXIT_CONFIG = 2


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigError(Exception):
    """Mistakes in the user's config, each naming the file, field path, bad value and the fix.

    One exception carries every mistake found (``mistakes``), so that a user fixes a file in one
    round instead of one rerun per mistake; ``field``, ``value`` and ``fix`` are the first one's.
    """

    def __init__(self, field: str, value: Any, fix: str, source: str = "<config>") -> None:
        self.field = field
        self.value = value
        self.fix = fix
        self.source = source
        self.mistakes: tuple[ConfigError, ...] = (self,)
        super().__init__(self.line())

    @classmethod
    def many(cls, errors: Iterable[ConfigError]) -> ConfigError:
        """Every mistake of ``errors`` (in order) as one exception; at least one is needed."""
        mistakes = tuple(m for err in errors for m in err.mistakes)
        if not mistakes:
            raise ValueError("ConfigError.many needs at least one mistake")
        first = mistakes[0]
        combined = cls(first.field, first.value, first.fix, first.source)
        combined.mistakes = mistakes
        combined.args = ("\n".join(combined.lines()),)
        return combined

    def with_source(self, source: str) -> ConfigError:
        """The same mistakes, named as found in the file ``source``."""
        return ConfigError.many(ConfigError(m.field, m.value, m.fix, source) for m in self.mistakes)

    def line(self) -> str:
        """The first mistake as ``FILE: FIELD = VALUE: FIX`` (the only one for a single mistake)."""
        value = "" if self.value is None else f" = {_short(self.value)}"
        return f"{self.source}: {self.field}{value}: {self.fix}"

    def lines(self) -> list[str]:
        """Every mistake, one line each, as :meth:`line` writes it."""
        return [m.line() for m in self.mistakes]


def raise_all(errors: Iterable[ConfigError]) -> None:
    """Raise every mistake of ``errors`` as one ConfigError; nothing when there are none."""
    errors = list(errors)
    if errors:
        raise ConfigError.many(errors)
