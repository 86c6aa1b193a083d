// livegate client for browsers and Node.js, as one ES module with no dependencies.
//
// subscribe() opens one Server-Sent Events stream for several channels or
// patterns, keeps the current document of every channel it receives, and
// calls onDocument with the whole document after each snapshot or delta.
// Documents are never mutated: a delta produces a new document that shares
// its unchanged parts with the previous one. So `previous.score === next.score`
// means the delta left the score alone. Treat received documents as read-only.
//
// Served by the gateway at /static/livegate.js. In Node.js, pass the
// EventSource class of the `eventsource` npm package as the EventSource option.

/** Connection states passed to onState. */
export const State = Object.freeze({
  CONNECTING: "connecting",
  LIVE: "live",
  RECONNECTING: "reconnecting",
  RESYNCHRONISING: "resynchronising",
  PAUSED: "paused",
  CLOSED: "closed",
  TOKEN_EXPIRED: "token-expired",
});

/** An RFC 6902 patch or RFC 6901 pointer that cannot be applied. */
export class PatchError extends Error {
  constructor(message, operationIndex = null) {
    super(operationIndex === null ? message : `operation ${operationIndex}: ${message}`);
    this.name = "PatchError";
    this.operationIndex = operationIndex;
  }
}

// --- JSON Pointer (RFC 6901) -------------------------------------------------

const ARRAY_INDEX = /^(0|[1-9][0-9]*)$/;

/** Split a JSON Pointer into unescaped reference tokens; "" is the whole document. */
export function parsePointer(pointer) {
  if (typeof pointer !== "string") {
    throw new PatchError(`JSON Pointer must be a string, got ${JSON.stringify(pointer)}`);
  }
  if (pointer === "") {
    return [];
  }
  if (pointer[0] !== "/") {
    throw new PatchError(`JSON Pointer ${JSON.stringify(pointer)} must be empty or start with "/"`);
  }
  return pointer.slice(1).split("/").map((token) => {
    if (/~(?![01])/.test(token)) {
      throw new PatchError(`JSON Pointer ${JSON.stringify(pointer)} has an invalid escape: "~" must be followed by 0 or 1`);
    }
    // "~1" first, so that "~01" becomes "~1" and not "/".
    return token.replace(/~1/g, "/").replace(/~0/g, "~");
  });
}

/** Escape one reference token for use in a JSON Pointer. */
export function escapePointerToken(token) {
  return String(token).replace(/~/g, "~0").replace(/\//g, "~1");
}

// --- JSON values ---------------------------------------------------------------

function hasOwn(object, key) {
  return Object.prototype.hasOwnProperty.call(object, key);
}

function isContainer(value) {
  return value !== null && typeof value === "object";
}

// Assignment to "__proto__" would change the prototype instead of adding a
// member, so members are defined as own properties.
function setMember(object, key, value) {
  Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
}

function shallowCopy(container) {
  if (Array.isArray(container)) {
    return container.slice();
  }
  const copy = {};
  for (const key of Object.keys(container)) {
    setMember(copy, key, container[key]);
  }
  return copy;
}

function deepCopy(value) {
  if (!isContainer(value)) {
    return value;
  }
  if (Array.isArray(value)) {
    return value.map(deepCopy);
  }
  const copy = {};
  for (const key of Object.keys(value)) {
    setMember(copy, key, deepCopy(value[key]));
  }
  return copy;
}

/** Compare two JSON values: arrays and objects by content, object keys in any order. */
export function jsonEqual(left, right) {
  if (left === right) {
    return true;
  }
  if (!isContainer(left) || !isContainer(right) || Array.isArray(left) !== Array.isArray(right)) {
    return false;
  }
  if (Array.isArray(left)) {
    return left.length === right.length && left.every((item, index) => jsonEqual(item, right[index]));
  }
  const keys = Object.keys(left);
  if (keys.length !== Object.keys(right).length) {
    return false;
  }
  return keys.every((key) => hasOwn(right, key) && jsonEqual(left[key], right[key]));
}

// --- JSON Patch (RFC 6902) -----------------------------------------------------

function describe(tokens) {
  return JSON.stringify(tokens.map((token) => "/" + escapePointerToken(token)).join(""));
}

// Index of an existing array element; `allowEnd` also accepts the length
// (for add), and "-" stands for the length.
function arrayIndex(array, token, tokens, allowEnd) {
  if (token === "-") {
    if (!allowEnd) {
      throw new PatchError(`"-" at ${describe(tokens)} refers to no existing element`);
    }
    return array.length;
  }
  if (!ARRAY_INDEX.test(token)) {
    throw new PatchError(`${JSON.stringify(token)} in ${describe(tokens)} is not a valid array index`);
  }
  const index = Number(token);
  const limit = allowEnd ? array.length : array.length - 1;
  if (index > limit) {
    throw new PatchError(`index ${index} in ${describe(tokens)} is out of range for an array of ${array.length}`);
  }
  return index;
}

function readValue(root, tokens) {
  let value = root;
  for (const token of tokens) {
    if (Array.isArray(value)) {
      value = value[arrayIndex(value, token, tokens, false)];
    } else if (isContainer(value) && hasOwn(value, token)) {
      value = value[token];
    } else {
      throw new PatchError(`path ${describe(tokens)} not found`);
    }
  }
  return value;
}

// Return the parent container of the last token, after copying every
// container on the way that this patch application does not own yet. The
// copies replace the originals in their (owned) parents, so the document
// passed to applyPatch is never written to.
function writableParent(state, tokens) {
  if (!isContainer(state.root)) {
    throw new PatchError(`path ${describe(tokens)} not found: the document is not an object or array`);
  }
  if (!state.owned.has(state.root)) {
    state.root = shallowCopy(state.root);
    state.owned.add(state.root);
  }
  let container = state.root;
  for (let depth = 0; depth < tokens.length - 1; depth++) {
    const token = tokens[depth];
    let key;
    if (Array.isArray(container)) {
      key = arrayIndex(container, token, tokens, false);
    } else if (hasOwn(container, token)) {
      key = token;
    } else {
      throw new PatchError(`path ${describe(tokens)} not found`);
    }
    let child = container[key];
    if (!isContainer(child)) {
      throw new PatchError(`path ${describe(tokens)} not found: ${describe(tokens.slice(0, depth + 1))} is not an object or array`);
    }
    if (!state.owned.has(child)) {
      child = shallowCopy(child);
      state.owned.add(child);
      if (Array.isArray(container)) {
        container[key] = child;
      } else {
        setMember(container, key, child);
      }
    }
    container = child;
  }
  return container;
}

function addValue(state, tokens, value) {
  if (tokens.length === 0) {
    state.root = value;
    return;
  }
  const parent = writableParent(state, tokens);
  const last = tokens[tokens.length - 1];
  if (Array.isArray(parent)) {
    parent.splice(arrayIndex(parent, last, tokens, true), 0, value);
  } else {
    setMember(parent, last, value);
  }
}

function removeValue(state, tokens) {
  if (tokens.length === 0) {
    throw new PatchError("cannot remove the whole document");
  }
  const parent = writableParent(state, tokens);
  const last = tokens[tokens.length - 1];
  if (Array.isArray(parent)) {
    parent.splice(arrayIndex(parent, last, tokens, false), 1);
  } else if (hasOwn(parent, last)) {
    delete parent[last];
  } else {
    throw new PatchError(`path ${describe(tokens)} not found`);
  }
}

function replaceValue(state, tokens, value) {
  if (tokens.length === 0) {
    state.root = value;
    return;
  }
  const parent = writableParent(state, tokens);
  const last = tokens[tokens.length - 1];
  if (Array.isArray(parent)) {
    parent[arrayIndex(parent, last, tokens, false)] = value;
  } else if (hasOwn(parent, last)) {
    setMember(parent, last, value);
  } else {
    throw new PatchError(`path ${describe(tokens)} not found`);
  }
}

function requireMember(operation, name) {
  if (!hasOwn(operation, name)) {
    throw new PatchError(`"${operation.op}" operation has no "${name}" member`);
  }
  return operation[name];
}

function applyOperation(state, operation) {
  if (!isContainer(operation) || Array.isArray(operation)) {
    throw new PatchError("an operation must be a JSON object");
  }
  const path = parsePointer(requireMember(operation, "path"));
  switch (operation.op) {
    case "add":
      addValue(state, path, requireMember(operation, "value"));
      break;
    case "remove":
      removeValue(state, path);
      break;
    case "replace":
      replaceValue(state, path, requireMember(operation, "value"));
      break;
    case "move": {
      const fromPointer = requireMember(operation, "from");
      const from = parsePointer(fromPointer);
      const value = readValue(state.root, from);
      if (fromPointer === operation.path) {
        break;
      }
      if (operation.path.startsWith(fromPointer + "/") || from.length === 0) {
        throw new PatchError(`cannot move ${JSON.stringify(fromPointer)} into its own child ${JSON.stringify(operation.path)}`);
      }
      removeValue(state, from);
      addValue(state, path, value);
      break;
    }
    case "copy": {
      const from = parsePointer(requireMember(operation, "from"));
      // A deep copy, so that later operations on one location leave the other alone.
      addValue(state, path, deepCopy(readValue(state.root, from)));
      break;
    }
    case "test": {
      const expected = requireMember(operation, "value");
      if (!jsonEqual(readValue(state.root, path), expected)) {
        throw new PatchError(`test failed: the value at ${describe(path)} is not ${JSON.stringify(expected)}`);
      }
      break;
    }
    default:
      throw new PatchError(`unknown operation ${JSON.stringify(operation.op)}`);
  }
}

/**
 * Apply an RFC 6902 patch and return the new document.
 *
 * Neither `document` nor `patch` is modified: containers on the changed
 * paths are copied, and unchanged parts are shared with `document`. When
 * any operation fails, the whole patch fails with a PatchError and nothing
 * changes.
 */
export function applyPatch(document, patch) {
  if (!Array.isArray(patch)) {
    throw new PatchError("a patch must be a JSON array of operations");
  }
  const state = { root: document, owned: new Set() };
  patch.forEach((operation, index) => {
    try {
      applyOperation(state, operation);
    } catch (error) {
      if (error instanceof PatchError && error.operationIndex === null) {
        throw new PatchError(error.message, index);
      }
      throw error;
    }
  });
  return state.root;
}

// --- Subscription --------------------------------------------------------------

const DEFAULT_STREAM_URL = "/v1/stream";
// Delays of the reconnects that this module makes itself. After a network
// error the EventSource reconnects by itself, after the server's retry: delay.
const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 30000;
// EventSource.CLOSED: the EventSource gave up and will not reconnect.
const EVENTSOURCE_CLOSED = 2;

// The result contains the token, so it must not appear in errors or logs.
function streamUrl(url, channels, since, token) {
  const base = typeof location !== "undefined" ? location.href : undefined;
  const target = new URL(url, base);
  target.searchParams.delete("channel");
  target.searchParams.delete("since");
  for (const channel of channels) {
    target.searchParams.append("channel", channel);
  }
  if (since) {
    target.searchParams.set("since", since);
  }
  if (token) {
    target.searchParams.set("token", token);
  }
  return target.toString();
}

function isNonEmptyString(value) {
  return typeof value === "string" && value !== "";
}

// Describe the type of a value without showing the value, which may be a secret.
function describeType(value) {
  if (value === null) {
    return "null";
  }
  return Array.isArray(value) ? "an array" : `a value of type ${typeof value}`;
}

// Between half and all of an exponentially growing ceiling, so that the
// clients of a gateway that went away do not all return at the same moment.
function backoffDelay(failures) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** failures);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * One stream of several channels, with the current document of each.
 *
 * Created by subscribe(). Reconnects by itself: the EventSource resends the
 * last event id as Last-Event-ID after a network error, and after an HTTP
 * error status this class opens a new EventSource with
 * ?since= set to that id, with exponential backoff and jitter. A delta that
 * cannot be applied (a failed patch, a version gap, invalid JSON) makes it
 * resynchronise: it reconnects without an id and receives fresh snapshots,
 * and keeps showing the documents it has until they arrive. When the gateway
 * ends the stream with a token-expired event, it closes the EventSource and,
 * unless the token option is a fixed string, reconnects with ?since= set to
 * the last id and a token from the token function.
 */
export class Subscription {
  constructor(options) {
    const { url = DEFAULT_STREAM_URL, channels, onDocument, onState, onError, lastEventId, documents, token } = options;
    if (!Array.isArray(channels) || channels.length === 0 || !channels.every((c) => typeof c === "string" && c)) {
      throw new TypeError("channels must be a non-empty array of channel names or patterns");
    }
    if (token != null && typeof token !== "function" && !isNonEmptyString(token)) {
      throw new TypeError(`token must be a non-empty string or a function that returns one, got ${describeType(token)}`);
    }
    const EventSourceClass = options.EventSource ?? globalThis.EventSource;
    if (typeof EventSourceClass !== "function") {
      throw new TypeError("no EventSource: pass one as the EventSource option (in Node.js, from the eventsource package)");
    }

    this.url = url;
    this.channels = [...channels];
    /** Id of the last snapshot or delta applied; sent back on reconnect. */
    this.lastEventId = lastEventId || null;
    this.state = null;
    /** Counters for diagnostics and tests. */
    this.stats = { snapshots: 0, deltas: 0, duplicates: 0, resyncs: 0, connectionErrors: 0, tokenExpiries: 0 };
    this._EventSource = EventSourceClass;
    this._onDocument = onDocument || (() => {});
    this._onState = onState || (() => {});
    this._onError = onError || ((error) => console.error("livegate:", error));
    // A string, a function called before each connection this class opens, or null.
    this._token = token ?? null;

    this._channels = new Map();
    for (const [channel, entry] of documents instanceof Map ? documents : Object.entries(documents || {})) {
      if (!Number.isInteger(entry?.version)) {
        throw new TypeError(`documents: the entry of ${channel} needs an integer version`);
      }
      this._channels.set(channel, { document: entry.document, version: entry.version });
    }
    this._source = null;
    this._timer = null;
    // Incremented by _stop(), so that a token that arrives after a close,
    // pause or newer connect is dropped.
    this._attempt = 0;
    // Set when a string token expired. The stream then stays closed.
    this._tokenSpent = false;
    // Consecutive connections that ended in an HTTP error status, reset when
    // a stream opens, and consecutive resynchronisations, reset when a delta applies.
    this._connectFailures = 0;
    this._resyncFailures = 0;

    this._connect(this.lastEventId, State.CONNECTING);
  }

  /** Returns the current {document, version} of `channel`, or undefined. */
  current(channel) {
    const entry = this._channels.get(channel);
    return entry ? { document: entry.document, version: entry.version } : undefined;
  }

  /** Returns the names of the channels received so far, in order of arrival. */
  channelNames() {
    return [...this._channels.keys()];
  }

  /** Close the stream for good. */
  close() {
    this._stop();
    this._setState(State.CLOSED);
  }

  /** Close the stream but keep the documents and the last id, for resume(). */
  pause() {
    if (this.state === State.CLOSED || this.state === State.PAUSED || this._tokenSpent) {
      return;
    }
    this._stop();
    this._setState(State.PAUSED);
  }

  /** Reconnect after pause(); the gateway sends only what changed meanwhile. */
  resume() {
    if (this.state === State.PAUSED) {
      this._connect(this.lastEventId, State.RECONNECTING);
    }
  }

  _stop() {
    this._attempt += 1;
    clearTimeout(this._timer);
    this._timer = null;
    if (this._source) {
      this._source.close();
      this._source = null;
    }
  }

  _setState(state, detail = {}) {
    if (state === this.state) {
      return;
    }
    this.state = state;
    this._call(this._onState, state, detail);
  }

  _call(callback, ...args) {
    try {
      callback(...args);
    } catch (error) {
      this._onError(error);
    }
  }

  _connect(since, state) {
    this._stop();
    const attempt = this._attempt;
    this._setState(state);
    if (attempt !== this._attempt) {
      return;  // onState closed or paused the subscription.
    }
    if (typeof this._token !== "function") {
      this._open(since, this._token);
      return;
    }

    let token;
    try {
      token = this._token();
    } catch (error) {
      this._tokenFailed(error);
      return;
    }
    if (typeof token?.then !== "function") {
      this._openWithToken(since, token);
      return;
    }
    // NOTE: there is no timeout, so a Promise that never settles leaves the stream unopened.
    Promise.resolve(token).then(
      (value) => {
        if (attempt === this._attempt) {
          this._openWithToken(since, value);
        }
      },
      (error) => {
        if (attempt === this._attempt) {
          this._tokenFailed(error);
        }
      },
    );
  }

  _openWithToken(since, token) {
    if (!isNonEmptyString(token)) {
      this._tokenFailed(new TypeError(`the token function returned ${describeType(token)} instead of a non-empty string`));
      return;
    }
    this._open(since, token);
  }

  // Report a token function that threw, rejected or returned no string, and retry after a backoff delay.
  _tokenFailed(error) {
    const message = error instanceof Error ? error.message : String(error);
    this._reconnectLater();
    this._setState(State.RECONNECTING);
    this._call(this._onError, new Error(`failed to get a subscriber token: ${message}`, { cause: error }));
  }

  _open(since, token) {
    const source = new this._EventSource(streamUrl(this.url, this.channels, since, token));
    this._source = source;
    // Each handler checks that its source is still the current one, because
    // a closed EventSource may still deliver an event that was queued.
    source.addEventListener("open", () => {
      if (source === this._source) {
        this._connectFailures = 0;
        this._setState(State.LIVE);
      }
    });
    source.addEventListener("error", () => {
      if (source === this._source) {
        this._connectionFailed(source);
      }
    });
    source.addEventListener("snapshot", (event) => {
      if (source === this._source) {
        this._receive(event, (message) => this._applySnapshot(event, message));
      }
    });
    source.addEventListener("delta", (event) => {
      if (source === this._source) {
        this._receive(event, (message) => this._applyDelta(event, message));
      }
    });
    source.addEventListener("token-expired", (event) => {
      if (source === this._source) {
        this._tokenExpired(event);
      }
    });
  }

  // The event has no id, so lastEventId still names the last update applied
  // and a resume from it misses nothing.
  _tokenExpired(event) {
    let reason = "the subscriber token expired";
    try {
      const message = JSON.parse(event.data);
      if (isNonEmptyString(message?.reason)) {
        reason = message.reason;
      }
    } catch {
      // Keep the default reason. The stream ends either way.
    }
    this.stats.tokenExpiries += 1;
    // Closing the EventSource stops it from reconnecting with the expired token.
    this._stop();
    this._setState(State.TOKEN_EXPIRED, { reason });
    if (this.state !== State.TOKEN_EXPIRED) {
      return;  // onState closed or paused the subscription.
    }

    if (typeof this._token === "string") {
      this._tokenSpent = true;
      this._call(this._onError, new Error(
        `stream closed: ${reason}. The token option is a fixed string, so it cannot be renewed. ` +
        "Pass a function that returns a fresh token instead."));
      return;
    }
    // Without a token option, the page may have renewed a cookie instead.
    this._reconnectLater();
  }

  // Schedule a new connection with ?since= set to the last id, after a backoff delay.
  _reconnectLater() {
    this._stop();
    const delay = backoffDelay(this._connectFailures);
    this._connectFailures += 1;
    this._timer = setTimeout(() => this._connect(this.lastEventId, State.RECONNECTING), delay);
  }

  _connectionFailed(source) {
    this.stats.connectionErrors += 1;
    if (source.readyState === EVENTSOURCE_CLOSED) {
      // The EventSource gave up after an HTTP error status (such as 503
      // from a gateway that is shutting down, or 401 for an expired token),
      // so open a new one later.
      this._reconnectLater();
    }
    // Otherwise the EventSource is already waiting to reconnect by itself.
    this._setState(State.RECONNECTING);
  }

  _receive(event, apply) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (error) {
      this._resynchronise(`invalid JSON in a ${event.type} event: ${error.message}`);
      return;
    }
    if (!isContainer(message) || typeof message.channel !== "string" || !Number.isInteger(message.version)) {
      this._resynchronise(`a ${event.type} event without a channel and an integer version`);
      return;
    }
    apply(message);
  }

  _applySnapshot(event, message) {
    const { channel, version, data } = message;
    const previous = this._channels.get(channel);
    this._channels.set(channel, { document: data, version });
    this.lastEventId = event.lastEventId || this.lastEventId;
    this.stats.snapshots += 1;
    this._call(this._onDocument, channel, data, version, {
      event: "snapshot",
      id: event.lastEventId,
      previous: previous ? previous.document : undefined,
    });
  }

  _applyDelta(event, message) {
    const { channel, version, patch } = message;
    const entry = this._channels.get(channel);
    if (!entry) {
      this._resynchronise(`delta version ${version} of ${channel} arrived before its snapshot`);
      return;
    }

    if (version <= entry.version) {
      // Already applied. Its id is older than the last one, so it is not kept.
      this.stats.duplicates += 1;
      return;
    }
    // A view's delta applies to every version from base_version on; any
    // other delta only to the version before it.
    const base = message.base_version ?? version - 1;
    if (!Number.isInteger(base) || entry.version < base) {
      this._resynchronise(`${channel}: delta version ${version} after version ${entry.version}`);
      return;
    }
    let document;
    try {
      document = applyPatch(entry.document, patch);
    } catch (error) {
      this._resynchronise(`${channel}: patch to version ${version} failed: ${error.message}`);
      return;
    }

    this._channels.set(channel, { document, version });
    this.lastEventId = event.lastEventId || this.lastEventId;
    this.stats.deltas += 1;
    this._resyncFailures = 0;
    this._call(this._onDocument, channel, document, version, {
      event: "delta",
      id: event.lastEventId,
      patch,
      previous: entry.document,
    });
  }

  _resynchronise(reason) {
    this.stats.resyncs += 1;
    this._stop();
    this._setState(State.RESYNCHRONISING, { reason });
    this._call(this._onError, new Error(`resynchronising: ${reason}`));
    // Without an id, the gateway starts over with a snapshot of every channel.
    this.lastEventId = null;
    const delay = backoffDelay(this._resyncFailures);
    this._resyncFailures += 1;
    this._timer = setTimeout(() => this._connect(null, State.RESYNCHRONISING), delay);
  }
}

/**
 * Open a stream and keep the current document of each channel.
 *
 * options.url          stream endpoint, default "/v1/stream" (relative to the page)
 * options.channels     channel names or patterns, e.g. ["sport-livescore/*"]
 * options.onDocument   (channel, document, version, change) after every snapshot
 *                      and every applied delta. change is {event: "snapshot" or
 *                      "delta", id, patch (deltas only), previous document}.
 * options.onState      (state, detail) on each change of connection state. The
 *                      state is one of the State values. detail.reason is the
 *                      cause of a resynchronisation or of a token expiry.
 * options.onError      (error) for resynchronisations, token failures and
 *                      exceptions thrown by the callbacks. Default: console.error.
 * options.token        the subscriber token, sent as the token query parameter:
 *                      a string, or a function returning a string or a Promise
 *                      of one, called before each connection this module opens.
 *                      Only a function lets the stream continue after a
 *                      token-expired event.
 * options.lastEventId  an id kept from an earlier session, to receive only what
 *                      changed since
 * options.documents    the {document, version} per channel held at lastEventId
 *                      (an object or a Map). The deltas that follow apply to
 *                      them; without them a delta makes the stream resynchronise.
 * options.EventSource  the EventSource class, default globalThis.EventSource
 *
 * Returns a Subscription.
 */
export function subscribe(options) {
  return new Subscription(options);
}
