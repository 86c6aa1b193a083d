// Print the snapshot and delta events of one stream as JSON lines
// ({"event", "id", "data"}), as the `eventsource` npm package parses them.
// tests/test_interop.py compares them with other SSE clients.
//
// Usage: node read-stream.mjs STREAM_URL COUNT [TIMEOUT_SECONDS]
// Exits 0 after COUNT events, 2 when TIMEOUT_SECONDS (default 20) pass first.

import { EventSource } from "eventsource";

const [url, countText, timeoutText = "20"] = process.argv.slice(2);
const count = Number(countText);
if (!url || !Number.isInteger(count) || count < 1) {
  console.error("usage: node read-stream.mjs STREAM_URL COUNT [TIMEOUT_SECONDS]");
  process.exit(64);
}

const source = new EventSource(url);
let received = 0;
const timer = setTimeout(() => {
  console.error(`timed out after ${timeoutText} s with ${received} of ${count} events`);
  process.exit(2);
}, Number(timeoutText) * 1000);

source.addEventListener("open", () => console.error("open"));
source.addEventListener("error", (event) => console.error(`error: ${event.message ?? "connection lost"}`));
for (const type of ["snapshot", "delta"]) {
  source.addEventListener(type, (event) => {
    process.stdout.write(JSON.stringify({ event: event.type, id: event.lastEventId, data: event.data }) + "\n");
    received += 1;
    if (received === count) {
      source.close();
      clearTimeout(timer);
    }
  });
}
