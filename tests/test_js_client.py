"""The JavaScript module static/livegate.js, run with Node's test runner.

tests/js/patch-cases.json is checked here against Python's jsonpatch, and
by tests/js/patch.test.mjs against the module, so both sides agree on
every case. Random document pairs, with the patches of the gateway's
differ (ingest.publisher.make_patch) and of jsonpatch.make_patch (which
also emits move operations), go to the module through a generated file.
"""

from __future__ import annotations

import copy
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import jsonpatch
import jsonpointer
import pytest

from ingest.publisher import canonical_json, make_patch

REPO_ROOT = Path(__file__).resolve().parents[1]
JS_TESTS = REPO_ROOT / "tests" / "js"
SHARED_CASES = JS_TESTS / "patch-cases.json"
NODE = shutil.which("node")
GENERATED_PAIRS = 300

# Keys that need JSON Pointer escaping, look like array indexes or are
# special in JavaScript objects.
KEYS = ["a", "b", "score", "", "0", "-", "a/b", "m~n", "~1", "__proto__", "events", "ไทย"]
LEAVES = [None, True, False, 0, 1, -2, 0.5, 1e20, "", "x", "line\nbreak", "ประตู"]


def random_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth >= 4 or roll < 0.45:
        return rng.choice(LEAVES)
    if roll < 0.7:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def mutate(rng: random.Random, value, depth: int = 0):
    """Return a changed copy of ``value`` that shares most of its structure."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        changed = dict(value)
        key = rng.choice(list(changed))
        action = rng.random()
        if action < 0.2:
            del changed[key]
        elif action < 0.4:
            changed[rng.choice(KEYS)] = random_value(rng, depth + 1)
        else:
            changed[key] = mutate(rng, changed[key], depth + 1)
        return changed
    if isinstance(value, list) and value and rng.random() < 0.8:
        changed = list(value)
        index = rng.randrange(len(changed))
        action = rng.random()
        if action < 0.2:
            del changed[index]
        elif action < 0.4:
            changed.insert(rng.randint(0, len(changed)), random_value(rng, depth + 1))
        elif action < 0.5:
            changed.append(None)
        elif action < 0.6:
            changed.reverse()
        else:
            changed[index] = mutate(rng, changed[index], depth + 1)
        return changed
    return random_value(rng, depth)


def generated_cases(seed: int, count: int) -> list[dict]:
    rng = random.Random(seed)
    cases = []
    for number in range(count):
        old = random_value(rng) if number % 5 == 0 else {"score": random_value(rng), "events": random_value(rng)}
        new = old
        for _ in range(rng.randint(1, 4)):
            new = mutate(rng, new)
        for differ, patch in (("make_patch", make_patch(old, new)),
                              ("jsonpatch", jsonpatch.make_patch(old, new).patch)):
            # Both patches must hold for Python first, or the case proves nothing.
            assert canonical_json(jsonpatch.apply_patch(copy.deepcopy(old), patch)) == canonical_json(new)
            cases.append({"name": f"{differ} {number}", "document": old, "patch": patch, "expected": new})
    return cases


def run_node_tests(env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NODE, "--test", "--test-reporter=tap", str(JS_TESTS)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": str(Path(NODE).parent), "NO_COLOR": "1", **env_extra},
    )


def tap_count(output: str, name: str) -> int:
    found = re.search(rf"^# {name} (\d+)$", output, re.MULTILINE)
    assert found, f"no '# {name}' line in the node test output:\n{output[-3000:]}"
    return int(found.group(1))


class TestSharedCases:
    @pytest.mark.parametrize("case", json.loads(SHARED_CASES.read_text()), ids=lambda case: case["name"])
    def test_python_agrees(self, case):
        document = copy.deepcopy(case["document"])
        if case.get("error"):
            with pytest.raises((jsonpatch.JsonPatchException, jsonpointer.JsonPointerException)):
                jsonpatch.apply_patch(document, case["patch"])
        else:
            result = jsonpatch.apply_patch(document, case["patch"])
            assert canonical_json(result) == canonical_json(case["expected"])
        assert document == case["document"]

    def test_names_unique(self):
        names = [case["name"] for case in json.loads(SHARED_CASES.read_text())]
        assert len(names) == len(set(names))


@pytest.mark.skipif(NODE is None, reason="node is not on PATH; install Node.js 20 or newer to run the JavaScript tests")
class TestNode:
    def test_node_suite_passes(self, tmp_path):
        cases_file = tmp_path / "generated-cases.json"
        cases = generated_cases(seed=6902, count=GENERATED_PAIRS)
        cases_file.write_text(json.dumps(cases, ensure_ascii=False))

        result = run_node_tests({"LIVEGATE_PATCH_CASES": str(cases_file)})

        output = result.stdout + result.stderr
        assert result.returncode == 0, f"node --test failed:\n{output[-6000:]}"
        assert tap_count(output, "fail") == 0
        assert tap_count(output, "skipped") == 0, "the generated cases did not run"
        assert tap_count(output, "pass") >= 90
