// Subscription of static/livegate.js against a scripted EventSource: states,
// patches, resynchronisation and reconnects. tests/test_interop.py and
// tests/test_scoreboard_browser.py run it against a real gateway.

import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";

import { State, subscribe } from "../../static/livegate.js";

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 2;

// An EventSource whose events the test dispatches by hand.
class ScriptedEventSource extends EventTarget {
  static CONNECTING = CONNECTING;
  static OPEN = OPEN;
  static CLOSED = CLOSED;
  static instances = [];

  constructor(url) {
    super();
    this.url = new URL(url);
    this.readyState = CONNECTING;
    ScriptedEventSource.instances.push(this);
  }

  close() {
    this.readyState = CLOSED;
  }

  open() {
    this.readyState = OPEN;
    this.dispatchEvent(new Event("open"));
  }

  send(type, id, data) {
    const text = typeof data === "string" ? data : JSON.stringify(data);
    this.dispatchEvent(new MessageEvent(type, { data: text, lastEventId: id }));
  }

  // A network error: the EventSource reconnects by itself.
  dropConnection() {
    this.readyState = CONNECTING;
    this.dispatchEvent(new Event("error"));
  }

  // An HTTP error status: the EventSource gives up.
  failWithStatus() {
    this.readyState = CLOSED;
    this.dispatchEvent(new Event("error"));
  }
}

function latest() {
  return ScriptedEventSource.instances.at(-1);
}

function start(options = {}) {
  const seen = { documents: [], states: [], errors: [] };
  const subscription = subscribe({
    url: "http://127.0.0.1:8000/v1/stream",
    channels: ["sport-livescore/*", "news/1"],
    EventSource: ScriptedEventSource,
    onDocument: (channel, document, version, change) => seen.documents.push({ channel, document, version, change }),
    onState: (state) => seen.states.push(state),
    onError: (error) => seen.errors.push(error),
    ...options,
  });
  return { subscription, seen };
}

const MATCH = "sport-livescore/7";
const DOCUMENT = { score: { home: 0, away: 0 }, events: [] };

beforeEach(() => {
  ScriptedEventSource.instances = [];
  mock.timers.enable({ apis: ["setTimeout"] });
});

afterEach(() => {
  mock.timers.reset();
});

test("snapshot then delta", () => {
  const { subscription, seen } = start();
  const source = latest();
  source.open();

  source.send("snapshot", "e-1", { channel: MATCH, version: 1, data: DOCUMENT });
  source.send("delta", "e-2", { channel: MATCH, version: 2, patch: [{ op: "replace", path: "/score/home", value: 1 }] });

  assert.deepEqual(seen.states, [State.CONNECTING, State.LIVE]);
  assert.equal(seen.documents.length, 2);
  assert.deepEqual(seen.documents[1].document, { score: { home: 1, away: 0 }, events: [] });
  assert.equal(seen.documents[1].version, 2);
  assert.equal(seen.documents[1].change.event, "delta");
  assert.equal(seen.documents[1].change.previous, seen.documents[0].document);
  assert.deepEqual(seen.documents[0].document, DOCUMENT);
  assert.deepEqual(subscription.current(MATCH), { document: seen.documents[1].document, version: 2 });
  assert.equal(subscription.lastEventId, "e-2");
  assert.deepEqual(source.url.searchParams.getAll("channel"), ["sport-livescore/*", "news/1"]);
  assert.equal(source.url.searchParams.get("since"), null);
});

test("failed patch resynchronises", () => {
  const { subscription, seen } = start();
  const first = latest();
  first.open();
  first.send("snapshot", "e-1", { channel: MATCH, version: 1, data: DOCUMENT });

  first.send("delta", "e-2", { channel: MATCH, version: 2, patch: [
    { op: "replace", path: "/score/home", value: 1 },
    { op: "remove", path: "/missing" },
  ] });

  assert.equal(subscription.state, State.RESYNCHRONISING);
  assert.equal(first.readyState, CLOSED);
  assert.deepEqual(subscription.current(MATCH), { document: DOCUMENT, version: 1 });
  assert.deepEqual(DOCUMENT, { score: { home: 0, away: 0 }, events: [] });
  assert.equal(seen.errors.length, 1);
  assert.match(seen.errors[0].message, /patch to version 2 failed/);

  mock.timers.tick(1000);
  const second = latest();
  assert.notEqual(second, first);
  assert.equal(second.url.searchParams.get("since"), null, "a resynchronisation must not resume");
  second.open();
  second.send("snapshot", "e-3", { channel: MATCH, version: 2, data: { score: { home: 1, away: 0 }, events: [] } });

  assert.equal(subscription.state, State.LIVE);
  assert.equal(subscription.current(MATCH).version, 2);
  assert.equal(subscription.stats.resyncs, 1);
});

test("version gap resynchronises", () => {
  const { subscription } = start();
  const source = latest();
  source.open();
  source.send("snapshot", "e-1", { channel: MATCH, version: 1, data: DOCUMENT });

  source.send("delta", "e-3", { channel: MATCH, version: 3, patch: [] });

  assert.equal(subscription.state, State.RESYNCHRONISING);
  assert.equal(subscription.current(MATCH).version, 1);
});

test("view delta applies from its base version", () => {
  const { subscription } = start();
  const source = latest();
  source.open();
  source.send("snapshot", "e-1", { channel: MATCH, version: 2, data: DOCUMENT });

  // Versions 3 and 4 changed nothing in the view; the patch applies to 2.
  source.send("delta", "e-5", { channel: MATCH, version: 5, base_version: 1, patch: [
    { op: "replace", path: "/score/home", value: 1 },
  ] });

  assert.equal(subscription.state, State.LIVE);
  assert.deepEqual(subscription.current(MATCH).document.score, { home: 1, away: 0 });
  assert.equal(subscription.current(MATCH).version, 5);

  source.send("delta", "e-9", { channel: MATCH, version: 9, base_version: 7, patch: [] });
  assert.equal(subscription.state, State.RESYNCHRONISING);
});

test("delta before snapshot resynchronises", () => {
  const { subscription } = start();
  latest().open();

  latest().send("delta", "e-1", { channel: MATCH, version: 4, patch: [] });

  assert.equal(subscription.state, State.RESYNCHRONISING);
});

test("invalid json resynchronises", () => {
  const { subscription } = start();
  latest().open();

  latest().send("snapshot", "e-1", "{not json");

  assert.equal(subscription.state, State.RESYNCHRONISING);
});

test("repeated delta is ignored", () => {
  const { subscription, seen } = start();
  const source = latest();
  source.open();
  source.send("snapshot", "e-1", { channel: MATCH, version: 1, data: DOCUMENT });
  source.send("delta", "e-2", { channel: MATCH, version: 2, patch: [{ op: "add", path: "/events/-", value: 1 }] });

  source.send("delta", "e-2", { channel: MATCH, version: 2, patch: [{ op: "add", path: "/events/-", value: 1 }] });

  assert.equal(seen.documents.length, 2);
  assert.deepEqual(subscription.current(MATCH).document.events, [1]);
  assert.equal(subscription.stats.duplicates, 1);
  assert.equal(subscription.state, State.LIVE);
});

test("network error leaves reconnect to EventSource", () => {
  const { subscription } = start();
  const source = latest();
  source.open();
  source.send("snapshot", "e-1", { channel: MATCH, version: 1, data: DOCUMENT });

  source.dropConnection();
  mock.timers.tick(60000);

  assert.equal(subscription.state, State.RECONNECTING);
  assert.equal(ScriptedEventSource.instances.length, 1);
  source.open();
  assert.equal(subscription.state, State.LIVE);
});

test("error status reopens with since", () => {
  const { subscription } = start();
  const first = latest();
  first.open();
  first.send("snapshot", "e-5", { channel: MATCH, version: 5, data: DOCUMENT });

  first.failWithStatus();

  assert.equal(subscription.state, State.RECONNECTING);
  assert.equal(first.readyState, CLOSED);
  mock.timers.tick(499);
  assert.equal(ScriptedEventSource.instances.length, 1, "reconnected before the minimum backoff");
  mock.timers.tick(501);
  const second = latest();
  assert.notEqual(second, first);
  assert.equal(second.url.searchParams.get("since"), "e-5");
  assert.deepEqual(second.url.searchParams.getAll("channel"), ["sport-livescore/*", "news/1"]);
});

test("backoff grows with error statuses", () => {
  start();
  latest().failWithStatus();
  mock.timers.tick(1000);
  assert.equal(ScriptedEventSource.instances.length, 2);

  latest().failWithStatus();
  mock.timers.tick(999);

  assert.equal(ScriptedEventSource.instances.length, 2, "second reconnect came before 1 s");
  mock.timers.tick(1001);
  assert.equal(ScriptedEventSource.instances.length, 3);
});

test("last event id option resumes", () => {
  start({ lastEventId: "abc-42" });

  assert.equal(latest().url.searchParams.get("since"), "abc-42");
});

test("documents option lets deltas apply", () => {
  const { subscription, seen } = start({
    lastEventId: "e-7",
    documents: { [MATCH]: { document: DOCUMENT, version: 7 } },
  });
  latest().open();

  latest().send("delta", "e-8", { channel: MATCH, version: 8, patch: [{ op: "replace", path: "/score/away", value: 1 }] });

  assert.equal(subscription.state, State.LIVE);
  assert.deepEqual(seen.documents[0].document.score, { home: 0, away: 1 });
  assert.equal(seen.documents[0].change.previous, DOCUMENT);
});

test("documents option needs versions", () => {
  assert.throws(() => start({ documents: { [MATCH]: { document: DOCUMENT } } }), TypeError);
});

test("pause then resume with since", () => {
  const { subscription } = start();
  const first = latest();
  first.open();
  first.send("snapshot", "e-9", { channel: MATCH, version: 1, data: DOCUMENT });

  subscription.pause();

  assert.equal(subscription.state, State.PAUSED);
  assert.equal(first.readyState, CLOSED);
  subscription.resume();
  assert.equal(latest().url.searchParams.get("since"), "e-9");
  assert.equal(subscription.state, State.RECONNECTING);
  assert.deepEqual(subscription.current(MATCH).document, DOCUMENT);
});

test("callback error is reported", () => {
  const errors = [];
  const subscription = subscribe({
    url: "http://127.0.0.1:8000/v1/stream",
    channels: [MATCH],
    EventSource: ScriptedEventSource,
    onDocument: () => {
      throw new Error("render failed");
    },
    onError: (error) => errors.push(error),
  });
  latest().open();

  latest().send("snapshot", "e-1", { channel: MATCH, version: 1, data: DOCUMENT });
  latest().send("delta", "e-2", { channel: MATCH, version: 2, patch: [] });

  assert.equal(errors.length, 2);
  assert.equal(errors[0].message, "render failed");
  assert.equal(subscription.current(MATCH).version, 2);
  assert.equal(subscription.state, State.LIVE);
});

test("close stops reconnects", () => {
  const { subscription } = start();
  latest().failWithStatus();

  subscription.close();
  mock.timers.tick(60000);

  assert.equal(subscription.state, State.CLOSED);
  assert.equal(ScriptedEventSource.instances.length, 1);
});

test("invalid channels rejected", () => {
  for (const channels of [undefined, [], [""], "news/1"]) {
    assert.throws(() => subscribe({ channels, EventSource: ScriptedEventSource }), TypeError);
  }
});

test("missing EventSource rejected", () => {
  assert.throws(() => subscribe({ channels: ["a"], EventSource: null }), /eventsource package/);
});

// --- Subscriber tokens -------------------------------------------------------

const PROTECTED = "vip/box/7";
const EXPIRED_REASON = "the subscriber token expired; renew it and reconnect with the last event id";

// Lets pending Promise callbacks run. setImmediate is not mocked.
function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

function expireToken(source) {
  source.send("token-expired", "", { reason: EXPIRED_REASON });
}

test("token string added to url", () => {
  start({ token: "eyJ a+b/c=" });

  const url = latest().url;
  assert.equal(url.searchParams.get("token"), "eyJ a+b/c=");
  assert.match(url.search, /token=eyJ\+a%2Bb%2Fc%3D/);
  assert.deepEqual(url.searchParams.getAll("channel"), ["sport-livescore/*", "news/1"]);
});

test("token function called per connect", () => {
  let calls = 0;
  start({ token: () => `token-${++calls}` });
  const first = latest();
  assert.equal(first.url.searchParams.get("token"), "token-1");

  first.dropConnection();
  assert.equal(calls, 1, "a network error is left to the EventSource, with the same URL");
  first.failWithStatus();
  mock.timers.tick(1000);

  assert.equal(calls, 2);
  assert.equal(latest().url.searchParams.get("token"), "token-2");
});

test("token expiry renews and resumes", async () => {
  let calls = 0;
  const { subscription, seen } = start({
    channels: [PROTECTED],
    token: async () => `token-${++calls}`,
  });
  assert.equal(ScriptedEventSource.instances.length, 0, "opened before the token arrived");
  await settle();
  const first = latest();
  assert.equal(first.url.searchParams.get("token"), "token-1");
  first.open();
  first.send("snapshot", "e-4", { channel: PROTECTED, version: 4, data: DOCUMENT });

  expireToken(first);

  assert.equal(first.readyState, CLOSED, "the EventSource would reconnect with the expired token");
  assert.equal(subscription.state, State.TOKEN_EXPIRED);
  assert.equal(subscription.stats.tokenExpiries, 1);
  mock.timers.tick(1000);
  await settle();
  assert.equal(calls, 2);
  const second = latest();
  assert.notEqual(second, first);
  assert.equal(second.url.searchParams.get("token"), "token-2");
  assert.equal(second.url.searchParams.get("since"), "e-4");
  second.open();
  second.send("delta", "e-5", { channel: PROTECTED, version: 5, patch: [{ op: "replace", path: "/score/home", value: 1 }] });

  assert.deepEqual(seen.states, [State.CONNECTING, State.LIVE, State.TOKEN_EXPIRED, State.RECONNECTING, State.LIVE]);
  assert.deepEqual(subscription.current(PROTECTED).document.score, { home: 1, away: 0 });
  assert.equal(subscription.stats.resyncs, 0);
  assert.deepEqual(seen.errors, []);
});

test("token expiry reason in detail", () => {
  const details = [];
  start({ token: () => "token", onState: (state, detail) => details.push({ state, detail }) });
  latest().open();

  expireToken(latest());

  assert.deepEqual(details.at(-1), { state: State.TOKEN_EXPIRED, detail: { reason: EXPIRED_REASON } });
});

test("string token stops on expiry", () => {
  const { subscription, seen } = start({ token: "secret-token-value" });
  const source = latest();
  source.open();
  source.send("snapshot", "e-1", { channel: MATCH, version: 1, data: DOCUMENT });

  expireToken(source);
  mock.timers.tick(60000);

  assert.equal(source.readyState, CLOSED);
  assert.equal(subscription.state, State.TOKEN_EXPIRED);
  assert.equal(ScriptedEventSource.instances.length, 1);
  assert.equal(seen.errors.length, 1);
  assert.match(seen.errors[0].message, /cannot be renewed/);
  assert.doesNotMatch(seen.errors[0].message, /secret-token-value/);
  assert.deepEqual(subscription.current(MATCH).document, DOCUMENT);
});

test("string token expiry blocks pause", () => {
  const { subscription } = start({ token: "secret-token-value" });
  latest().open();
  expireToken(latest());

  subscription.pause();
  subscription.resume();

  assert.equal(subscription.state, State.TOKEN_EXPIRED);
  assert.equal(ScriptedEventSource.instances.length, 1);
});

test("token expiry without token reconnects", () => {
  const { subscription } = start();
  const first = latest();
  first.open();
  first.send("snapshot", "e-2", { channel: MATCH, version: 1, data: DOCUMENT });

  expireToken(first);
  mock.timers.tick(1000);

  assert.equal(subscription.state, State.RECONNECTING);
  assert.equal(latest().url.searchParams.get("since"), "e-2");
  assert.equal(latest().url.searchParams.get("token"), null);
});

test("token function failure retries", async () => {
  const results = [
    () => Promise.reject(new Error("token service unavailable")),
    () => 42,
    () => {
      throw new Error("not logged in");
    },
    () => Promise.resolve("token-ok"),
  ];
  const { subscription, seen } = start({ token: () => results.shift()() });
  await settle();

  for (let retry = 0; retry < 3; retry++) {
    assert.equal(subscription.state, State.RECONNECTING);
    assert.equal(ScriptedEventSource.instances.length, 0);
    mock.timers.tick(30000);
    await settle();
  }

  assert.equal(ScriptedEventSource.instances.length, 1);
  assert.equal(latest().url.searchParams.get("token"), "token-ok");
  assert.equal(seen.errors.length, 3);
  assert.match(seen.errors[0].message, /failed to get a subscriber token: token service unavailable/);
  assert.match(seen.errors[1].message, /returned a value of type number/);
  assert.doesNotMatch(seen.errors[1].message, /42/);
  assert.match(seen.errors[2].message, /not logged in/);
});

test("close while token pending", async () => {
  let release;
  const { subscription } = start({ token: () => new Promise((resolve) => { release = resolve; }) });

  subscription.close();
  release("late-token");
  await settle();

  assert.equal(subscription.state, State.CLOSED);
  assert.equal(ScriptedEventSource.instances.length, 0);
});

test("invalid token option rejected", () => {
  for (const token of ["", 42, {}, ["a"]]) {
    assert.throws(() => start({ token }), TypeError);
  }
});
