"""The scoreboard page at "/" in headless Chromium, against a live gateway.

Needs Debian's chromium at /usr/bin/chromium (`.ci/run` installs it when
missing) and the playwright package; never `playwright install`. The run
saves screenshots in test-artifacts/ for people to look at:
scoreboard.png (the board, right after a goal), scoreboard-match.png (one
match), scoreboard-reconnecting.png (the gateway gone) and
scoreboard-th.png (Thai, on a phone-sized screen).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from ingest.publisher import Publisher
from ingest.simulator import simulated_matches
from tests.support.gateway import Gateway

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Short reconnect delays and shutdown, so that a gateway restart takes about a second.
FAST_RECONNECT = {
    "LIVEGATE_RETRY_MS": "200",
    "LIVEGATE_RETRY_JITTER_MS": "100",
    "LIVEGATE_SHUTDOWN_WINDOW": "0.2",
}
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# WCAG 2 AA minimum contrast for normal-size text.
MIN_CONTRAST = 4.5


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
    playwright = sync_api.sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()


class Feed:
    """Simulated matches published to one Redis, with what was last published."""

    def __init__(self, redis_url: str, count: int) -> None:
        self.publisher = Publisher(redis.Redis.from_url(redis_url))
        self.matches = simulated_matches(count)
        self.published: dict[str, Any] = {}
        self.versions: dict[str, int] = {}

    def publish_all(self) -> int:
        """Publish every match; return how many documents changed."""
        changed = 0
        for match in self.matches:
            channel = f"sport-livescore/{match.match_id}"
            document = match.document()
            result = self.publisher.publish(channel, document)
            self.published[channel] = copy.deepcopy(document)
            self.versions[channel] = result.version
            changed += result.changed
        return changed

    def tick(self) -> int:
        for match in self.matches:
            match.tick()
        return self.publish_all()

    def score_goal(self, index: int, side: str, player: str) -> str:
        """Add a goal to match ``index``, publish everything and return its channel."""
        match = self.matches[index]
        match.score[side] += 1
        match.events.append({"id": f"{match.match_id}-goal-{len(match.events) + 1}", "type": "goal",
                             "minute": match.minute, "team": side, "player": player})
        self.publish_all()
        return f"sport-livescore/{match.match_id}"

    def shown(self) -> dict[str, list]:
        """Channel -> [home goals, away goals, version] that the page must show."""
        return {channel: [document["score"]["home"], document["score"]["away"], self.versions[channel]]
                for channel, document in self.published.items()}


# Resolves when every card shows the expected goals and version.
CARDS_SHOWN = """(expected) => Object.entries(expected).every(([channel, [home, away, version]]) => {
    const card = document.querySelector(`[data-channel="${channel}"]`);
    return card !== null
        && card.dataset.version === String(version)
        && card.querySelector('.goals[data-side="home"]').textContent === String(home)
        && card.querySelector('.goals[data-side="away"]').textContent === String(away);
})"""

STATE_IS = "(state) => document.getElementById('connection').dataset.state === state"

PAGE_DOCUMENTS = """() => Object.fromEntries(
    [...window.livegateScoreboard.matches].map(([channel, entry]) => [channel, entry.document]))"""

PAGE_STATS = "() => ({...window.livegateScoreboard.subscription.stats})"


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def watch_page_errors(page) -> list[str]:
    """Collect uncaught exceptions of the page's scripts."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


@pytest.fixture(scope="module")
def shared_gateway(redis_server_module, tmp_path_factory):
    gateway = Gateway(redis_server_module.url, workers=1, env=FAST_RECONNECT,
                      log_dir=tmp_path_factory.mktemp("scoreboard-gateway"))
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def shared_feed(redis_server_module):
    feed = Feed(redis_server_module.url, 8)
    feed.publish_all()
    return feed


def open_board(browser, gateway: Gateway, feed: Feed):
    """Open the board and wait for the published scores, at most one second after the request."""
    context = browser.new_context(locale="en-GB", viewport=DESKTOP)
    page = context.new_page()
    errors = watch_page_errors(page)
    started = time.monotonic()
    page.goto(f"{gateway.url}/")
    page.wait_for_function(CARDS_SHOWN, arg=feed.shown(), timeout=1000)
    assert time.monotonic() - started < 1.0
    page.wait_for_function(STATE_IS, arg="live", timeout=1000)
    return context, page, errors


class TestLiveScoreboard:
    def test_scores_goal_and_match_view(self, browser, shared_gateway, shared_feed):
        feed = shared_feed
        context, page, errors = open_board(browser, shared_gateway, feed)
        assert page.locator("#connection-text").text_content() == "Live"

        # A goal: the new score, a flash and an announcement.
        channel = feed.score_goal(0, "home", "K. Tanaka")
        page.wait_for_function(CARDS_SHOWN, arg=feed.shown(), timeout=2000)
        card = page.locator(f'[data-channel="{channel}"]')
        assert "goal-flash" in card.get_attribute("class")
        page.wait_for_function("() => document.getElementById('announcer').textContent.startsWith('Goal!')",
                               timeout=2000)
        home_name = feed.published[channel]["teams"]["home"]["name"]
        assert home_name in page.locator("#announcer").text_content()
        screenshot(page, "scoreboard.png")

        # The match view: events, statistics, lineups and the version.
        card.locator("a").click()
        page.wait_for_selector("#match-body:not([hidden])", timeout=2000)
        document = feed.published[channel]
        assert page.locator("#match-home").text_content() == home_name
        assert page.locator("#match-score").text_content() == f"{document['score']['home']}–{document['score']['away']}"
        assert page.locator("#match-version").text_content() == f"Version {feed.versions[channel]}"
        assert page.locator("#timeline .event").count() == len(document["events"])
        assert "K. Tanaka" in page.locator("#timeline .event-goal").first.text_content()
        assert page.locator(".lineup-home .player").count() == len(document["lineups"]["home"])
        assert page.locator(".lineup-away .player").count() == len(document["lineups"]["away"])
        assert page.locator("#statistics .statistic").count() == len(document["statistics"])
        screenshot(page, "scoreboard-match.png")
        page.locator(".back-link").click()
        page.wait_for_selector("#board:not([hidden])", timeout=2000)
        assert page.evaluate("document.activeElement.closest('[data-channel]')?.dataset.channel") == channel
        assert errors == []
        context.close()

    def test_recovers_after_gateway_restart(self, browser, redis_server, gateway_factory):
        gateway = gateway_factory(redis_server.url, workers=1, env=FAST_RECONNECT)
        feed = Feed(redis_server.url, 3)
        feed.publish_all()
        first_versions = dict(feed.versions)
        context, page, errors = open_board(browser, gateway, feed)
        feed.score_goal(0, "home", "K. Tanaka")
        page.wait_for_function(CARDS_SHOWN, arg=feed.shown(), timeout=2000)

        # The gateway goes away: the page shows it and keeps the scores.
        stats_before = page.evaluate(PAGE_STATS)
        gateway.stop()
        page.wait_for_function(STATE_IS, arg="reconnecting", timeout=5000)
        assert page.locator("#connection-text").text_content() == "Reconnecting…"
        screenshot(page, "scoreboard-reconnecting.png")
        # One tick while it is down: the missed deltas are smaller than the
        # documents, so the gateway replays them instead of sending snapshots.
        feed.tick()

        # A new gateway on the same port: the browser resumes with Last-Event-ID.
        gateway_factory(redis_server.url, workers=1, env=FAST_RECONNECT, port=gateway.port)
        page.wait_for_function(STATE_IS, arg="live", timeout=15000)
        page.wait_for_function(CARDS_SHOWN, arg=feed.shown(), timeout=5000)
        feed.score_goal(1, "away", "B. Costa")
        feed.tick()
        page.wait_for_function(CARDS_SHOWN, arg=feed.shown(), timeout=5000)

        stats = page.evaluate(PAGE_STATS)
        assert stats["resyncs"] == 0, f"the page had to resynchronise: {stats}"
        assert stats["snapshots"] == stats_before["snapshots"] == len(feed.matches), f"snapshots were sent again: {stats}"
        # Every version after the first snapshots arrived as a delta, none twice.
        assert stats["deltas"] == sum(feed.versions.values()) - sum(first_versions.values())
        assert stats["duplicates"] == 0
        assert page.evaluate(PAGE_DOCUMENTS) == feed.published
        assert errors == []
        context.close()


def relative_luminance(rgb: list[float]) -> float:
    def linear(channel: float) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(channel) for channel in rgb[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_ratio(foreground: list[float], background: list[float]) -> float:
    lighter, darker = sorted((relative_luminance(foreground), relative_luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# Text colour and effective background (semi-transparent layers composited
# over their ancestors) of the first element matching each selector.
COLOURS = """(selectors) => {
    const parse = (text) => {
        const parts = text.match(/[\\d.]+/g).map(Number);
        return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
    };
    const blend = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
    const background = (element) => {
        if (!element) return [255, 255, 255, 1];
        const own = parse(getComputedStyle(element).backgroundColor);
        return own[3] >= 1 ? own : blend(own, background(element.parentElement));
    };
    return selectors.map((selector) => {
        const element = document.querySelector(selector);
        return element ? [parse(getComputedStyle(element).color), background(element)] : null;
    });
}"""

CONTRAST_SELECTORS = [
    ".site-title a", "#connection-text", ".languages button[aria-pressed='true']",
    ".languages button[aria-pressed='false']", ".competition-name", ".card-status.is-playing",
    ".team-name", ".goals", ".card-version", ".site-footer p",
]


class TestPage:
    def test_served_with_policy(self, shared_gateway):
        response = httpx.get(f"{shared_gateway.url}/")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-cache"
        assert '<script type="module" src="/static/scoreboard.js">' in response.text
        module = httpx.get(f"{shared_gateway.url}/static/livegate.js")
        assert module.status_code == 200
        assert "javascript" in module.headers["content-type"]

    def test_thai_from_browser_language(self, browser, shared_gateway, shared_feed):
        context = browser.new_context(locale="th-TH", viewport=PHONE)
        page = context.new_page()
        errors = watch_page_errors(page)
        try:
            page.goto(f"{shared_gateway.url}/")
            page.wait_for_function(CARDS_SHOWN, arg=shared_feed.shown(), timeout=2000)
            page.wait_for_function(STATE_IS, arg="live", timeout=2000)

            assert page.evaluate("document.documentElement.lang") == "th"
            assert page.locator(".site-title").text_content() == "ผลบอลสด"
            assert page.locator("#connection-text").text_content() == "สด"
            assert page.locator("button[data-language='th']").get_attribute("aria-pressed") == "true"
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            screenshot(page, "scoreboard-th.png")

            page.locator("button[data-language='en']").click()
            assert page.evaluate("document.documentElement.lang") == "en"
            assert page.locator(".site-title").text_content() == "Live scores"
            page.reload()
            page.wait_for_function(STATE_IS, arg="live", timeout=2000)
            assert page.locator(".site-title").text_content() == "Live scores", "the choice was not kept"
            assert errors == []
        finally:
            context.close()

    def test_match_view_by_address(self, browser, shared_gateway, shared_feed):
        match = shared_feed.matches[2]
        channel = f"sport-livescore/{match.match_id}"
        context = browser.new_context(locale="en-GB", viewport=PHONE)
        page = context.new_page()
        try:
            page.goto(f"{shared_gateway.url}/#/match/{match.match_id}")
            page.wait_for_selector("#match-body:not([hidden])", timeout=2000)

            assert page.locator("#match-competition").text_content() == match.competition[1]
            assert page.locator("#match-away").text_content() == match.away[0]
            assert page.locator(".lineup-home .player").count() == 11
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            assert page.evaluate("document.activeElement.id") == "match-heading"
            assert page.title().startswith(match.home[0])

            page.goto(f"{shared_gateway.url}/#/match/99999")
            page.wait_for_function(STATE_IS, arg="live", timeout=2000)
            page.wait_for_selector("#match-message:not([hidden])", timeout=2000)
            assert page.locator("#match-message").text_content() == "This match is not on the feed."
            assert shared_feed.versions[channel] >= 1
        finally:
            context.close()

    def test_accessibility_basics(self, browser, shared_gateway, shared_feed):
        context = browser.new_context(locale="en-GB", viewport=DESKTOP)
        page = context.new_page()
        try:
            page.goto(f"{shared_gateway.url}/")
            page.wait_for_function(CARDS_SHOWN, arg=shared_feed.shown(), timeout=2000)

            for role in ("banner", "main", "contentinfo", "navigation", "status"):
                assert page.get_by_role(role).count() == 1, f"expected one {role} landmark or region"
            assert page.locator("#announcer").get_attribute("aria-live") == "polite"
            labels = page.locator(".match-card").evaluate_all("(links) => links.map((l) => l.getAttribute('aria-label'))")
            assert all(label and "–" in label for label in labels)

            colours = page.evaluate(COLOURS, CONTRAST_SELECTORS)
            for selector, pair in zip(CONTRAST_SELECTORS, colours):
                assert pair is not None, f"no element matches {selector}"
                ratio = contrast_ratio(*pair)
                assert ratio >= MIN_CONTRAST, f"{selector}: contrast {ratio:.2f} is below {MIN_CONTRAST}"

            # Updates change a card in place, so a focused card keeps the focus.
            channel = f"sport-livescore/{shared_feed.matches[0].match_id}"
            page.locator(f'[data-channel="{channel}"] a').focus()
            shared_feed.tick()
            page.wait_for_function(CARDS_SHOWN, arg=shared_feed.shown(), timeout=2000)
            assert page.evaluate("document.activeElement.closest('[data-channel]')?.dataset.channel") == channel
        finally:
            context.close()
