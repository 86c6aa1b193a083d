"""Views: named projections of a channel's document.

A view lists JSON Pointers (RFC 6901). Its projection of a document is
the object that holds only the values at those pointers, nested as in
the document: the view ``/teams, /score/home`` projects
``{"teams": [...], "score": {"home": 1, "away": 0}, "events": [...]}``
to ``{"teams": [...], "score": {"home": 1}}``. Pointers step through
objects only: a pointer that meets an array, a scalar or a missing key on
its way selects nothing. The projection of a document that is not an
object is the empty object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# View names appear in query strings and metrics-free logs; keep them short and plain.
_VIEW_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_VIEW_PATHS = 256


class ViewError(ValueError):
    """A view declaration that cannot be used."""


@dataclass(frozen=True)
class View:
    name: str
    # The declared pointers, as written.
    paths: tuple[str, ...]
    # Each pointer split into its unescaped reference tokens.
    tokens: tuple[tuple[str, ...], ...]

    def project(self, document: Any) -> dict:
        """Return the projection of ``document``; shares no mutable part with it."""
        projection: dict = {}
        if not isinstance(document, dict):
            return projection
        for tokens in self.tokens:
            value = document
            found = True
            for token in tokens:
                if not isinstance(value, dict) or token not in value:
                    found = False
                    break
                value = value[token]
            if found:
                _place(projection, tokens, value)
        return projection


def _place(projection: dict, tokens: tuple[str, ...], value: Any) -> None:
    target = projection
    for token in tokens[:-1]:
        child = target.get(token)
        if not isinstance(child, dict):
            child = {}
            target[token] = child
        target = child
    # A pointer inside one already placed whole (/score and /score/home)
    # adds nothing; a whole value replaces a partial one placed before.
    if tokens[-1] in target and not isinstance(target[tokens[-1]], dict):
        return
    target[tokens[-1]] = _copy(value)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """Split an RFC 6901 pointer into reference tokens; raise ViewError when invalid."""
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        raise ViewError(f"path {pointer!r} must be a JSON Pointer starting with '/'")
    if pointer == "/":
        raise ViewError("path '/' selects the key \"\"; list the paths the view needs")
    tokens = []
    for raw in pointer[1:].split("/"):
        if re.search(r"~[^01]|~$", raw):
            raise ViewError(f"path {pointer!r} has a '~' not followed by 0 or 1")
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tuple(tokens)


def make_view(name: str, paths: object) -> View:
    """Build a view from its declaration; raise ViewError naming what is wrong."""
    if not isinstance(name, str) or not _VIEW_NAME.match(name):
        raise ViewError(f"view name {name!r} must be 1 to 64 of A-Z a-z 0-9 _ . -")
    if not isinstance(paths, list) or not paths:
        raise ViewError(f"view {name!r} needs a non-empty list 'paths' of JSON Pointers")
    if len(paths) > MAX_VIEW_PATHS:
        raise ViewError(f"view {name!r} lists {len(paths)} paths; the maximum is {MAX_VIEW_PATHS}")
    tokens = []
    for path in paths:
        try:
            tokens.append(parse_pointer(path))
        except ViewError as error:
            raise ViewError(f"view {name!r}: {error}") from None
    # Shorter pointers first, so that a whole value is placed before the
    # pointers inside it and wins over them.
    tokens.sort(key=len)
    return View(name, tuple(paths), tuple(tokens))
