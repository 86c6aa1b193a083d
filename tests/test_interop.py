"""Independent SSE clients read the same stream alike, and the examples of
docs/clients.md run.

Readers: httpx-sse, sseclient-py, the `eventsource` npm package under
Node.js and headless Chromium's EventSource. Each must see the same
events, ids and data, byte for byte. The Node reader needs node and npm
(tests/js/node_modules is installed with `npm ci` when missing); the
browser needs /usr/bin/chromium. A missing one is left out, and the test
skips when fewer than three readers remain.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Optional

import httpx
import jsonpatch
import pytest
import redis
import sseclient

from ingest.publisher import Publisher
from tests.support.gateway import Gateway
from tests.support.processes import stop_process
from tests.support.sse import SSEClient
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
JS_TESTS = REPO_ROOT / "tests" / "js"
CLIENTS_DOC = REPO_ROOT / "docs" / "clients.md"
DOC_GATEWAY_URL = "http://127.0.0.1:8000"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
NODE = shutil.which("node")
# Streams are closed over this many seconds when a test gateway stops.
FAST_SHUTDOWN = {"LIVEGATE_SHUTDOWN_WINDOW": "0.2"}
NPM = shutil.which("npm")
NPM_CI_TIMEOUT = 180

Received = tuple[str, str, str]  # (event, id, data)


# --- tools ----------------------------------------------------------------------------


def eventsource_package() -> Optional[str]:
    """Return None when the `eventsource` npm package is ready, else why it is not.

    Runs `npm ci` in tests/js when node_modules is missing.
    """
    if NODE is None:
        return "node is not on PATH"
    if (JS_TESTS / "node_modules" / "eventsource" / "package.json").is_file():
        return None
    if NPM is None:
        return "npm is not on PATH, and tests/js/node_modules is missing"
    try:
        result = subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=JS_TESTS,
                                capture_output=True, text=True, timeout=NPM_CI_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"npm ci in tests/js did not finish within {NPM_CI_TIMEOUT} s"
    if result.returncode != 0:
        return f"npm ci in tests/js failed with exit code {result.returncode}: {result.stderr[-500:]}"
    return None


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium, or None when /usr/bin/chromium or Playwright is missing."""
    if not CHROMIUM.exists():
        yield None
        return
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        yield None
        return
    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()


class ChildProcess:
    """A child process whose stdout lines are collected by a thread."""

    def __init__(self, command: list[str], cwd: Path, env: Optional[dict] = None) -> None:
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._collect, args=(self.process.stdout, self.lines), daemon=True),
            threading.Thread(target=self._collect, args=(self.process.stderr, self.errors), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _collect(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        def found():
            return next((line for line in list(self.lines) if predicate(line)), None)

        try:
            return wait_for(found, timeout=timeout, message="an expected output line")
        except TimeoutError:
            raise AssertionError(
                f"no expected line within {timeout:g} s (exit code {self.process.poll()}).\n"
                f"stdout: {self.lines[-10:]}\nstderr: {self.errors[-20:]}"
            ) from None

    def stop(self) -> None:
        stop_process(self.process, self._threads)


@pytest.fixture
def children():
    started: list[ChildProcess] = []

    def start(command: list[str], cwd: Path = REPO_ROOT, env: Optional[dict] = None) -> ChildProcess:
        child = ChildProcess(command, cwd, env)
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()


# --- readers --------------------------------------------------------------------------


class HttpxSseReader:
    name = "httpx-sse"

    def __init__(self, url: str) -> None:
        self.client = SSEClient(url)
        self.client.start()

    def received(self) -> list[Received]:
        return [(e.event, e.id, e.data) for e in self.client.events if e.event in ("snapshot", "delta")]

    def close(self) -> None:
        self.client.close()


class SseclientPyReader:
    """sseclient-py over the standard library's urllib, in a thread."""

    name = "sseclient-py"

    def __init__(self, url: str, count: int) -> None:
        self._received: list[Received] = []
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._read, args=(url, count), daemon=True)
        self._thread.start()

    def _read(self, url: str, count: int) -> None:
        request = urllib.request.Request(url, headers={"Accept": "text/event-stream"})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                for event in sseclient.SSEClient(response).events():
                    if event.event in ("snapshot", "delta"):
                        self._received.append((event.event, event.id, event.data))
                        if len(self._received) == count:
                            return
        except (OSError, ValueError) as error:
            self.error = error

    def received(self) -> list[Received]:
        return list(self._received)

    def close(self) -> None:
        self._thread.join(timeout=5)


class EventSourceNpmReader:
    name = "eventsource (npm)"

    def __init__(self, url: str, count: int, children) -> None:
        self.child = children([NODE, str(JS_TESTS / "read-stream.mjs"), url, str(count), "30"], cwd=JS_TESTS)

    def received(self) -> list[Received]:
        return [tuple(json.loads(line).values()) for line in list(self.child.lines)]

    def close(self) -> None:
        self.child.stop()


class BrowserReader:
    name = "Chromium EventSource"

    def __init__(self, browser, base_url: str, url: str) -> None:
        self.page = browser.new_page()
        # Same origin as the stream, so no CORS is involved.
        self.page.goto(f"{base_url}/healthz")
        self.page.evaluate(
            """(url) => {
                window.received = [];
                window.source = new EventSource(url);
                for (const type of ["snapshot", "delta"]) {
                    window.source.addEventListener(type, (event) => {
                        window.received.push([event.type, event.lastEventId, event.data]);
                    });
                }
            }""",
            url,
        )

    def received(self) -> list[Received]:
        return [tuple(item) for item in self.page.evaluate("window.received")]

    def close(self) -> None:
        self.page.evaluate("window.source.close()")
        self.page.close()


def interop_documents() -> dict[str, dict]:
    return {
        "interop/a": {"team": "ราชบุรี", "score": [0, 0], "note": "line one\nline two", "events": []},
        # U+2028 and U+2029 are line terminators in JavaScript, but SSE splits lines only at CR and LF.
        "interop/b": {"quote": "say \"hi\"\u2028and\u2029bye", "empty": "", "nothing": None, "list": [1, 2.5, True]},
        # Larger than a socket read, so frames arrive split across reads.
        "interop-extra/1": {"rows": [{"id": i, "name": f"row {i}", "tags": ["x"] * 5} for i in range(1500)]},
    }


def change(document: dict, step: int) -> dict:
    changed = json.loads(json.dumps(document))
    if "score" in changed:
        changed["score"][step % 2] += 1
        changed["events"].append({"minute": step, "text": f"ประตู {step}"})
    elif "rows" in changed:
        changed["rows"][step]["name"] = f"renamed {step}"
    else:
        changed["list"].append(None if step % 2 else {"step": step})
    return changed


class TestSameEvents:
    # With gzip on, the readers that send Accept-Encoding: gzip (httpx, Node's
    # fetch, Chromium) decode a compressed stream and sseclient-py over
    # urllib, which does not, reads the same events uncompressed.
    @pytest.mark.parametrize("compression", ["off", "gzip"])
    def test_readers_see_same_events(self, redis_server, gateway_factory, browser, children,
                                     compression):
        gateway = gateway_factory(redis_server.url, workers=2,
                                  env={**FAST_SHUTDOWN, "LIVEGATE_STREAM_COMPRESSION": compression})
        publisher = Publisher(redis.Redis.from_url(redis_server.url))
        documents = interop_documents()
        for channel, document in documents.items():
            publisher.publish(channel, document)
        updates = 12
        expected_count = len(documents) + updates
        url = f"{gateway.url}/v1/stream?channel=interop/*&channel=interop-extra/1"

        readers = [HttpxSseReader(url), SseclientPyReader(url, expected_count)]
        left_out = []
        npm_problem = eventsource_package()
        if npm_problem is None:
            readers.append(EventSourceNpmReader(url, expected_count, children))
        else:
            left_out.append(f"eventsource (npm): {npm_problem}")
        if browser is not None:
            readers.append(BrowserReader(browser, gateway.url, url))
        else:
            left_out.append(f"Chromium EventSource: {CHROMIUM} or playwright is missing")
        try:
            if len(readers) < 3:
                pytest.skip(f"fewer than three SSE clients available; left out: {'; '.join(left_out)}")
            for reader in readers:
                wait_for(lambda reader=reader: len(reader.received()) >= len(documents), timeout=15,
                         message=f"the snapshots read by {reader.name}")

            channels = list(documents)
            for step in range(updates):
                channel = channels[step % len(channels)]
                documents[channel] = change(documents[channel], step)
                assert publisher.publish(channel, documents[channel]).changed

            for reader in readers:
                wait_for(lambda reader=reader: len(reader.received()) >= expected_count, timeout=15,
                         message=f"all events read by {reader.name}")
            reference = readers[0].received()
            for reader in readers[1:]:
                assert reader.received() == reference, f"{reader.name} differs from {readers[0].name}"
            encoding = readers[0].client.response_headers.get("content-encoding")
            assert encoding == (None if compression == "off" else "gzip")
        finally:
            for reader in readers:
                reader.close()

        initial = [json.loads(data)["channel"] for _, _, data in reference[:len(documents)]]
        assert sorted(initial) == sorted(documents)
        ids = [int(event_id.rsplit("-", 1)[1]) for _, event_id, _ in reference]
        assert ids == sorted(ids)
        mirror = {}
        for event, _, data in reference:
            message = json.loads(data)
            if event == "snapshot":
                mirror[message["channel"]] = message["data"]
            else:
                mirror[message["channel"]] = jsonpatch.apply_patch(mirror[message["channel"]], message["patch"])
        assert mirror == documents
        if left_out:
            print("left out: " + "; ".join(left_out))


# --- docs/clients.md ----------------------------------------------------------------------


def doc_examples() -> dict[str, str]:
    """Return the fenced code blocks of docs/clients.md whose first line is an
    `example: NAME` comment, by NAME."""
    examples = {}
    for block in re.finditer(r"^```\w*\n(.*?)^```", CLIENTS_DOC.read_text(), re.DOTALL | re.MULTILINE):
        body = block.group(1)
        marker = re.match(r"\s*(?:#|//|<!--)\s*example:\s*([\w-]+)", body)
        if marker:
            examples[marker.group(1)] = body
    return examples


def example(name: str, gateway_url: str) -> str:
    examples = doc_examples()
    assert name in examples, f"docs/clients.md has no example named {name!r}; it has {sorted(examples)}"
    return examples[name].replace(DOC_GATEWAY_URL, gateway_url)


def command_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def match_document(home: int, away: int, teams: tuple[str, str] = ("Port FC", "Chonburi")) -> dict:
    return {
        "id": "1", "competition": {"code": "T1", "name": "Thai League 1"}, "status": "IN_PLAY",
        "minute": 10, "teams": {"home": {"name": teams[0]}, "away": {"name": teams[1]}},
        "score": {"home": home, "away": away, "half_time": None},
        "events": [], "lineups": {"home": [], "away": []}, "statistics": {},
    }


@pytest.fixture(scope="module")
def doc_gateway(redis_server_module, tmp_path_factory):
    """One gateway for the examples. Each test publishes to channels of its own."""
    gateway = Gateway(redis_server_module.url, workers=1, env=FAST_SHUTDOWN,
                      log_dir=tmp_path_factory.mktemp("doc-gateway"))
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def doc_publisher(redis_server_module):
    return Publisher(redis.Redis.from_url(redis_server_module.url))


_channel_numbers = iter(range(100, 10_000))


@pytest.fixture
def match_channel(doc_publisher) -> str:
    """A new match channel, sport-livescore/N, published as version 1 at 0-0."""
    channel = f"sport-livescore/{next(_channel_numbers)}"
    doc_publisher.publish(channel, match_document(0, 0))
    return channel


class TestDocsExamples:
    def test_examples_found(self):
        assert set(doc_examples()) == {"browser", "curl", "curl-resume", "python", "python-client",
                                       "python-tail", "node"}

    @pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not on PATH")
    def test_curl(self, doc_gateway, match_channel):
        [command] = command_lines(example("curl", doc_gateway.url))

        result = subprocess.run(shlex.split(command) + ["--max-time", "2"], capture_output=True,
                                text=True, timeout=15)

        assert result.returncode == 28, result.stderr  # 28: stopped by --max-time
        assert result.stdout.startswith("retry: ")
        assert "event: snapshot\n" in result.stdout
        assert f'"channel":"{match_channel}","version":1' in result.stdout

    @pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not on PATH")
    def test_curl_resume(self, doc_gateway, doc_publisher, match_channel):
        other_channel = f"{match_channel}0"
        doc_publisher.publish(other_channel, match_document(0, 0))
        last_id = httpx.get(f"{doc_gateway.url}/v1/channels/{other_channel}").json()["id"]
        doc_publisher.publish(match_channel, match_document(1, 0))
        [command] = command_lines(example("curl-resume", doc_gateway.url))
        command = command.replace("1f9c2a7b3e4d-5127", last_id)

        result = subprocess.run(shlex.split(command) + ["--max-time", "2"], capture_output=True,
                                text=True, timeout=15)

        assert result.returncode == 28, result.stderr
        assert "event: snapshot" not in result.stdout
        assert result.stdout.count("event: delta") == 1
        assert f'"channel":"{match_channel}","version":2' in result.stdout

    @pytest.mark.parametrize("name", ["python", "python-client"])
    def test_python(self, doc_gateway, doc_publisher, match_channel, children, tmp_path, name):
        script = tmp_path / "example.py"
        script.write_text(example(name, doc_gateway.url))

        child = children([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        child.wait_for_line(lambda line: line == f"{match_channel} 1 0 0")
        doc_publisher.publish(match_channel, match_document(1, 0))

        child.wait_for_line(lambda line: line == f"{match_channel} 2 1 0")

    def test_python_tail(self, doc_gateway, doc_publisher, match_channel, children):
        [command] = command_lines(example("python-tail", doc_gateway.url))
        arguments = shlex.split(command)
        assert arguments[:3] == ["python", "-m", "livegate_client"]
        max_events = int(arguments[arguments.index("--max-events") + 1])
        existing = httpx.get(f"{doc_gateway.url}/v1/channels", params={"pattern": "sport-livescore/*"})
        snapshots = len(existing.json()["channels"])
        assert snapshots < max_events

        child = children([sys.executable, *arguments[1:]])
        child.wait_for_line(lambda line: json.loads(line)["channel"] == match_channel)
        for goals in range(1, max_events - snapshots + 1):
            doc_publisher.publish(match_channel, match_document(goals, 0))

        assert child.process.wait(timeout=15) == 0
        lines = [json.loads(line) for line in child.lines]
        assert len(lines) == max_events
        assert lines[-1]["channel"] == match_channel
        assert lines[-1]["data"] == match_document(max_events - snapshots, 0)
        ours = [line["version"] for line in lines if line["channel"] == match_channel]
        assert ours == list(range(1, max_events - snapshots + 2))

    def test_node(self, doc_gateway, doc_publisher, match_channel, children, tmp_path):
        problem = eventsource_package()
        if problem:
            pytest.skip(problem)
        # The two setup commands of the example: the package, then the module from the gateway.
        (tmp_path / "node_modules").symlink_to(JS_TESTS / "node_modules", target_is_directory=True)
        module = httpx.get(f"{doc_gateway.url}/static/livegate.js")
        assert module.status_code == 200
        assert "javascript" in module.headers["content-type"]
        (tmp_path / "livegate.mjs").write_bytes(module.content)
        (tmp_path / "tail.mjs").write_text(example("node", doc_gateway.url))

        child = children([NODE, "tail.mjs"], cwd=tmp_path)
        child.wait_for_line(lambda line: line == f"{match_channel} 1 0-0")
        doc_publisher.publish(match_channel, match_document(0, 1))

        child.wait_for_line(lambda line: line == f"{match_channel} 2 0-1")
        assert "state: live" in child.errors

    def test_browser(self, doc_gateway, doc_publisher, browser):
        if browser is None:
            pytest.skip(f"{CHROMIUM} or playwright is missing")
        teams = ("Bangkok United", "Chiangrai United")
        channel = f"sport-livescore/{next(_channel_numbers)}"
        doc_publisher.publish(channel, match_document(0, 0, teams))
        gateway = doc_gateway
        html = f"<!doctype html><meta charset=utf-8><title>example</title>\n{example('browser', gateway.url)}"
        page = browser.new_page()
        try:
            # Served at the gateway's origin, as the docs require.
            page.route(f"{gateway.url}/example.html",
                       lambda route: route.fulfill(status=200, content_type="text/html", body=html))
            page.goto(f"{gateway.url}/example.html")
            page.wait_for_function("document.getElementById('state').textContent === 'live'", timeout=5000)
            page.wait_for_function(
                "document.getElementById('matches').textContent"
                ".includes('Bangkok United 0–0 Chiangrai United (version 1)')",
                timeout=5000)
            doc_publisher.publish(channel, match_document(2, 0, teams))

            page.wait_for_function(
                "document.getElementById('matches').textContent"
                ".includes('Bangkok United 2–0 Chiangrai United (version 2)')",
                timeout=5000)
        finally:
            page.close()
