"""RFC 6902 patch generation in linear time.

jsonpatch's ``make_patch`` (1.47) detects moves inside lists, but its cost
grows with the square of the number of list operations: about 0.5 s for
a list of 2,000 small objects and close to a minute for 20,000 on one
core. A gateway cannot spend that on a publish, so this differ compares
objects key by key and lists index by index, appends and removes at the
tail, and never emits ``move`` or ``copy``. An insertion at the front of a
list therefore becomes a replacement of every later element; the
publisher sends a snapshot when a patch grows larger than the document.

Values compare strictly by JSON type: ``1``, ``1.0`` and ``true`` differ,
although Python's ``==`` treats them as equal.
"""

from __future__ import annotations

from typing import Any


def escape_pointer_token(token: str) -> str:
    """Escape one JSON Pointer reference token (RFC 6901: "~" then "/")."""
    return token.replace("~", "~0").replace("/", "~1")


def json_equal(left: Any, right: Any) -> bool:
    """Compare two JSON values, distinguishing integers, floats and booleans."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        if left.keys() != right.keys():
            return False
        return all(json_equal(value, right[key]) for key, value in left.items())
    if isinstance(left, list):
        if len(left) != len(right):
            return False
        return all(json_equal(a, b) for a, b in zip(left, right))
    return left == right


def diff(old: Any, new: Any) -> list[dict]:
    """Return a patch that turns ``old`` into ``new``; empty when they are equal."""
    operations: list[dict] = []
    _diff_value(old, new, "", operations)
    return operations


def _diff_value(old: Any, new: Any, path: str, operations: list[dict]) -> None:
    if type(old) is not type(new):
        operations.append({"op": "replace", "path": path, "value": new})
    elif isinstance(old, dict):
        _diff_object(old, new, path, operations)
    elif isinstance(old, list):
        _diff_array(old, new, path, operations)
    elif old != new:
        operations.append({"op": "replace", "path": path, "value": new})


def _diff_object(old: dict, new: dict, path: str, operations: list[dict]) -> None:
    for key in old:
        if key not in new:
            operations.append({"op": "remove", "path": f"{path}/{escape_pointer_token(key)}"})
    for key, value in new.items():
        member = f"{path}/{escape_pointer_token(key)}"
        if key in old:
            _diff_value(old[key], value, member, operations)
        else:
            operations.append({"op": "add", "path": member, "value": value})


def _diff_array(old: list, new: list, path: str, operations: list[dict]) -> None:
    common = min(len(old), len(new))
    for index in range(common):
        _diff_value(old[index], new[index], f"{path}/{index}", operations)
    # Removals go from the end, so each index is still valid when applied.
    for index in range(len(old) - 1, common - 1, -1):
        operations.append({"op": "remove", "path": f"{path}/{index}"})
    for index in range(common, len(new)):
        operations.append({"op": "add", "path": f"{path}/{index}", "value": new[index]})
