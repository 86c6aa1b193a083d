"""Field paths of the generic JSON adapter: ``response[].fixture.id``.

A path is segments separated by dots. A segment is an object key
(``fixture``), a key followed by ``[]`` (every item of that list) or by
``[N]`` (item N, negative counts from the end), or a bare ``[]`` / ``[N]``
for a list at the top. Keys that contain a dot or brackets cannot be
named. Missing keys, wrong types and short lists yield nothing rather
than an error, because the adapter must degrade, not fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

_SEGMENT = re.compile(r"^(?P<key>[^\[\]]*)(?P<index>\[(?P<number>-?\d*)\])?$")


class PathError(ValueError):
    """A path string that does not follow the syntax above."""


@dataclass(frozen=True)
class Step:
    """One step of a path: a key lookup, every list item (``each``) or one list item."""

    key: str | None = None
    each: bool = False
    index: int | None = None

    def render(self) -> str:
        if self.key is not None:
            return self.key
        if self.each:
            return "[]"
        return f"[{self.index}]"


@dataclass(frozen=True)
class Path:
    text: str
    steps: tuple[Step, ...]

    @property
    def each_count(self) -> int:
        return sum(step.each for step in self.steps)

    def split_at_first_each(self) -> tuple["Path", "Path"]:
        """Split into the part up to and including the first ``[]`` and the rest."""
        for position, step in enumerate(self.steps):
            if step.each:
                return _join(self.steps[: position + 1]), _join(self.steps[position + 1:])
        raise PathError(f"path {self.text!r} has no [] to split at")

    def relative_to(self, prefix: "Path") -> "Path":
        """Return the rest of this path after ``prefix``; raises PathError if it does not start with it."""
        if self.steps[: len(prefix.steps)] != prefix.steps:
            raise PathError(f"path {self.text!r} does not start with {prefix.text!r}")
        return _join(self.steps[len(prefix.steps):])


def _join(steps: tuple[Step, ...]) -> Path:
    text = ""
    for step in steps:
        piece = step.render()
        if step.key is not None and text:
            text += "."
        text += piece
    return Path(text, tuple(steps))


def parse_path(text: str) -> Path:
    """Parse ``text``; raises PathError naming the bad segment."""
    if not isinstance(text, str) or not text.strip():
        raise PathError("a path must be a non-empty string")
    steps: list[Step] = []
    for segment in text.strip().split("."):
        match = _SEGMENT.match(segment)
        if match is None or (not match.group("key") and not match.group("index")):
            raise PathError(f"invalid segment {segment!r} in path {text!r}")
        key = match.group("key")
        if key:
            steps.append(Step(key=key))
        if match.group("index"):
            number = match.group("number")
            steps.append(Step(each=True) if number == "" else Step(index=int(number)))
    return Path(text.strip(), tuple(steps))


def _walk(value: Any, steps: tuple[Step, ...]) -> Iterator[Any]:
    if not steps:
        yield value
        return
    step, rest = steps[0], steps[1:]
    if step.key is not None:
        if isinstance(value, dict) and step.key in value:
            yield from _walk(value[step.key], rest)
    elif step.each:
        if isinstance(value, list):
            for item in value:
                yield from _walk(item, rest)
    elif isinstance(value, list) and -len(value) <= step.index < len(value):
        yield from _walk(value[step.index], rest)


def find_all(value: Any, path: Path) -> list[Any]:
    """Return every value the path reaches, in document order."""
    return list(_walk(value, path.steps))


def find_one(value: Any, path: Path) -> Any:
    """Return the first value the path reaches, or None."""
    for found in _walk(value, path.steps):
        return found
    return None
