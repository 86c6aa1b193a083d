"""Unit tests of make_patch and canonical_json in ingest.publisher."""

from __future__ import annotations

import copy

import jsonpatch
import orjson
import pytest
from hypothesis import given, settings, strategies as st

from ingest.publisher import DocumentError, canonical_json, make_patch

# Few distinct keys and small values, so that old and new share structure and the
# values 1, 1.0, true and 0, 0.0, false meet often (Python's == treats them as equal).
keys = st.sampled_from(["a", "b", "c", "", "x/y", "m~n", "0"])
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=2),
    st.sampled_from([0.0, 1.0, -1.0, 0.5]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "a", "b", "1"]),
    st.text(max_size=5),
)
documents = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=25,
)


def apply_through_json(old, patch):
    """Apply ``patch`` the way a client does: after a JSON round trip of both."""
    document = orjson.loads(canonical_json(old))
    operations = orjson.loads(canonical_json(patch))
    return jsonpatch.apply_patch(document, operations)


def replaces_root(patch: list[dict]) -> bool:
    return any(operation["path"] == "" for operation in patch)


class TestMakePatchProperty:
    @settings(max_examples=200, deadline=None)
    @given(documents, documents)
    def test_reproduces_new(self, old, new):
        old_before = copy.deepcopy(old)
        new_before = copy.deepcopy(new)

        patch = make_patch(old, new)
        result = jsonpatch.apply_patch(old, patch)

        assert canonical_json(result) == canonical_json(new)
        assert canonical_json(apply_through_json(old, patch)) == canonical_json(new)
        assert canonical_json(old) == canonical_json(old_before)
        assert canonical_json(new) == canonical_json(new_before)

    # A null root has its own test below.
    @settings(max_examples=200, deadline=None)
    @given(documents.filter(lambda document: document is not None))
    def test_same_document_empty(self, document):
        assert make_patch(document, copy.deepcopy(document)) == []


class TestMakePatchCases:
    def test_insert_in_middle(self):
        old = [1, 2, 3]
        new = [1, 9, 2, 3]

        patch = make_patch(old, new)

        assert jsonpatch.apply_patch(old, patch) == new
        assert not replaces_root(patch)

    def test_remove_from_front(self):
        old = ["a", "b", "c"]
        new = ["b", "c"]

        patch = make_patch(old, new)

        assert jsonpatch.apply_patch(old, patch) == new
        assert not replaces_root(patch)

    def test_remove_several_from_front(self):
        old = [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}]
        new = [{"id": 3}, {"id": 4}]

        patch = make_patch(old, new)

        assert jsonpatch.apply_patch(old, patch) == new

    def test_null_to_value(self):
        old = {"a": None}
        new = {"a": 1}

        patch = make_patch(old, new)

        assert canonical_json(jsonpatch.apply_patch(old, patch)) == b'{"a":1}'

    def test_value_to_null(self):
        old = {"a": 1, "b": 2}
        new = {"a": None, "b": 2}

        patch = make_patch(old, new)

        assert canonical_json(jsonpatch.apply_patch(old, patch)) == b'{"a":null,"b":2}'
        assert not replaces_root(patch)

    def test_null_unchanged_empty(self):
        assert make_patch(None, None) == []

    def test_root_null(self):
        patch = make_patch(None, {"a": 1})

        assert jsonpatch.apply_patch(None, patch) == {"a": 1}

    def test_list_to_object(self):
        old = {"a": [1]}
        new = {"a": {"0": 1}}

        patch = make_patch(old, new)

        assert canonical_json(jsonpatch.apply_patch(old, patch)) == b'{"a":{"0":1}}'

    def test_scalar_type_change(self):
        old = {"a": "1"}
        new = {"a": 1}

        patch = make_patch(old, new)

        assert canonical_json(jsonpatch.apply_patch(old, patch)) == b'{"a":1}'

    @pytest.mark.parametrize(
        "old, new, expected",
        [
            (1, 1.0, b"1.0"),
            (1, True, b"true"),
            (True, 1, b"1"),
            (0, False, b"false"),
            ({"a": 1}, {"a": True}, b'{"a":true}'),
            ({"a": 1.0}, {"a": 1}, b'{"a":1}'),
            ([1, 2], [True, 2], b"[true,2]"),
            ([1, 1.0, True], [True, 1, 1.0], b"[true,1,1.0]"),
            ({"a": [0]}, {"a": [False]}, b'{"a":[false]}'),
        ],
    )
    def test_equal_in_python_distinct_in_json(self, old, new, expected):
        patch = make_patch(old, new)

        assert canonical_json(jsonpatch.apply_patch(old, patch)) == expected

    def test_nested_change_small(self):
        old = {"users": [{"name": "ann", "score": 1}, {"name": "bob", "score": 2}]}
        new = {"users": [{"name": "ann", "score": 1}, {"name": "bob", "score": 3}]}

        patch = make_patch(old, new)

        assert patch == [{"op": "replace", "path": "/users/1/score", "value": 3}]

    def test_key_with_slash_and_tilde(self):
        old = {"a/b": 1, "c~d": 2}
        new = {"a/b": 2, "c~d": 3}

        patch = make_patch(old, new)

        assert jsonpatch.apply_patch(old, patch) == new


class TestCanonicalJson:
    def test_sorted_compact(self):
        assert canonical_json({"b": [1, 2], "a": {"d": None, "c": "x"}}) == (
            b'{"a":{"c":"x","d":null},"b":[1,2]}'
        )

    def test_types_distinct(self):
        assert canonical_json(1) == b"1"
        assert canonical_json(1.0) == b"1.0"
        assert canonical_json(True) == b"true"

    def test_key_order_ignored(self):
        assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})

    def test_escapes_line_breaks(self):
        assert canonical_json("a\nb\r") == b'"a\\nb\\r"'

    @pytest.mark.parametrize(
        "document",
        [{1: "a"}, {("a",): 1}, 2**64, -(2**63) - 1, object(), {"a": {1, 2}}, b"bytes"],
        ids=["int-key", "tuple-key", "big-int", "small-int", "object", "set", "bytes"],
    )
    def test_invalid_rejected(self, document):
        with pytest.raises(DocumentError, match="not valid JSON"):
            canonical_json(document)

    def test_error_is_value_error(self):
        with pytest.raises(ValueError):
            canonical_json({1: 1})
