// RFC 6902 application of static/livegate.js, on the cases that
// tests/test_js_client.py also checks against Python's jsonpatch.
//
// Run: node --test tests/js/
// With LIVEGATE_PATCH_CASES=FILE, the cases in FILE run too (the pytest
// test writes random document pairs and their patches there).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { PatchError, applyPatch, escapePointerToken, jsonEqual, parsePointer } from "../../static/livegate.js";

const SHARED_CASES = JSON.parse(readFileSync(new URL("./patch-cases.json", import.meta.url), "utf8"));

// JSON text with sorted keys. JSON.stringify writes -0 as 0, as Python's
// json writes -0.0 and 0.0 the same after a round trip through JavaScript.
function canonical(value) {
  if (Array.isArray(value)) {
    return `[${value.map(canonical).join(",")}]`;
  }
  if (value !== null && typeof value === "object") {
    const members = Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`);
    return `{${members.join(",")}}`;
  }
  return JSON.stringify(value);
}

// Frozen inputs make any write by applyPatch throw a TypeError (modules run
// in strict mode), so a passing case also shows that nothing was mutated.
function deepFreeze(value) {
  if (value !== null && typeof value === "object") {
    for (const key of Object.keys(value)) {
      deepFreeze(value[key]);
    }
    Object.freeze(value);
  }
  return value;
}

function checkCase(testCase) {
  const document = deepFreeze(structuredClone(testCase.document));
  const patch = deepFreeze(structuredClone(testCase.patch));
  const before = canonical(document);
  if (testCase.error) {
    assert.throws(() => applyPatch(document, patch), PatchError, `${testCase.name}: expected a PatchError`);
  } else {
    const result = applyPatch(document, patch);
    assert.equal(canonical(result), canonical(testCase.expected), testCase.name);
  }
  assert.equal(canonical(document), before, `${testCase.name}: the input document changed`);
}

test("shared cases", async (t) => {
  for (const testCase of SHARED_CASES) {
    await t.test(testCase.name, () => checkCase(testCase));
  }
});

test("generated cases", { skip: !process.env.LIVEGATE_PATCH_CASES && "LIVEGATE_PATCH_CASES is not set" }, () => {
  const cases = JSON.parse(readFileSync(process.env.LIVEGATE_PATCH_CASES, "utf8"));
  assert.ok(cases.length > 0, "the generated cases file is empty");
  for (const testCase of cases) {
    checkCase(testCase);
  }
});

test("unchanged parts are shared", () => {
  const document = deepFreeze({ score: { home: 0, away: 0 }, lineups: { home: [{ n: 1 }], away: [{ n: 2 }] } });

  const result = applyPatch(document, [{ op: "replace", path: "/lineups/home/0/n", value: 9 }]);

  assert.equal(result.score, document.score);
  assert.equal(result.lineups.away, document.lineups.away);
  assert.notEqual(result.lineups.home, document.lineups.home);
  assert.equal(result.lineups.home[0].n, 9);
});

test("failed patch leaves input intact", () => {
  const document = { events: [{ id: 1 }], score: { home: 0 } };
  const patch = [
    { op: "replace", path: "/score/home", value: 1 },
    { op: "add", path: "/events/-", value: { id: 2 } },
    { op: "test", path: "/score/home", value: 0 },
  ];

  assert.throws(() => applyPatch(document, patch), (error) => error instanceof PatchError && error.operationIndex === 2);

  assert.deepEqual(document, { events: [{ id: 1 }], score: { home: 0 } });
});

test("inserted values stay independent of the patch", () => {
  const patch = [
    { op: "add", path: "/a", value: { list: [1] } },
    { op: "add", path: "/a/list/-", value: 2 },
  ];

  const result = applyPatch({}, patch);

  assert.deepEqual(result, { a: { list: [1, 2] } });
  assert.deepEqual(patch[0].value, { list: [1] });
});

test("proto member does not pollute", () => {
  const result = applyPatch({}, [{ op: "add", path: "/__proto__", value: { polluted: true } }]);

  assert.equal(Object.getPrototypeOf(result), Object.prototype);
  assert.equal(Object.prototype.hasOwnProperty.call(result, "__proto__"), true);
  assert.equal({}.polluted, undefined);
});

test("pointer parsing", () => {
  assert.deepEqual(parsePointer(""), []);
  assert.deepEqual(parsePointer("/"), [""]);
  assert.deepEqual(parsePointer("/a~1b/m~0n/~01"), ["a/b", "m~n", "~1"]);
  assert.throws(() => parsePointer("a"), PatchError);
  assert.throws(() => parsePointer("/a~"), PatchError);
  assert.throws(() => parsePointer(7), PatchError);
});

test("pointer escaping round trip", () => {
  for (const key of ["", "a/b", "m~n", "~1", "/~0/"]) {
    assert.deepEqual(parsePointer("/" + escapePointerToken(key)), [key]);
  }
});

test("patch must be an array", () => {
  assert.throws(() => applyPatch({}, { op: "add", path: "/a", value: 1 }), PatchError);
  assert.throws(() => applyPatch({}, [null]), PatchError);
  assert.throws(() => applyPatch({}, [{ op: "add", value: 1 }]), PatchError);
});

test("json equality", () => {
  assert.equal(jsonEqual({ a: [1, null] }, { a: [1, null] }), true);
  assert.equal(jsonEqual([], {}), false);
  assert.equal(jsonEqual(null, {}), false);
  assert.equal(jsonEqual({ a: undefined }, { b: undefined }), false);
  assert.equal(jsonEqual(1, true), false);
});
