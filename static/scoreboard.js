// The scoreboard page served at "/": live matches per competition, and one
// match's events, statistics and lineups (#/match/ID). A single stream of
// sport-livescore/* feeds both views, because every match document carries
// its events, lineups and statistics.

import { State, subscribe } from "./livegate.js";
import { LANGUAGES, LOCALES, hasMessage, pickLanguage, translator } from "./i18n.js";

const MATCH_PATTERN = "sport-livescore/*";
const MATCH_PREFIX = "sport-livescore/";
const LANGUAGE_STORAGE_KEY = "livegate.language";
const FLASH_MS = 3000;
// A page hidden this long closes its stream, because an open stream keeps a
// phone's radio awake. Shown again, it resumes from the last id.
const HIDDEN_PAUSE_MS = 60000;
const PLAYING_STATUSES = new Set(["IN_PLAY", "EXTRA_TIME", "PENALTY_SHOOTOUT"]);
const LIVE_STATUSES = new Set([...PLAYING_STATUSES, "PAUSED", "SUSPENDED"]);
const SIDES = ["home", "away"];

/** channel -> {document, version} of every match received. */
const matches = new Map();
/** channel -> <li> of its card on the board. */
const cards = new Map();
/** competition code -> <section> on the board. */
const sections = new Map();

let language = "en";
let t = translator(language);
let openChannel = null;
// The channel, document and language on the match view, so that an update
// redraws only the parts that changed.
let shownMatch = { channel: null, document: null, language: null };
// Set when the match view opens; the heading takes the focus once it shows.
let focusMatchHeading = false;

// --- small helpers --------------------------------------------------------------

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name === "class") {
      node.className = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  node.append(...[].concat(children).filter((child) => child !== null && child !== undefined));
  return node;
}

function byId(id) {
  return document.getElementById(id);
}

function isMatchDocument(value) {
  return value !== null && typeof value === "object" && value.teams && value.score;
}

function matchIdOf(channel) {
  return channel.slice(MATCH_PREFIX.length);
}

function matchHash(channel) {
  return `#/match/${encodeURIComponent(matchIdOf(channel))}`;
}

function teamName(match, side) {
  return match.teams?.[side]?.name || t(side === "home" ? "match.home" : "match.away");
}

function goals(match, side) {
  const value = match.score?.[side];
  return Number.isInteger(value) ? value : 0;
}

function minuteText(minute, stoppage) {
  if (!Number.isInteger(minute)) {
    return "";
  }
  return stoppage ? `${minute}+${stoppage}′` : `${minute}′`;
}

function statusLabel(status) {
  return t(`status.${status}`, {}, status || "");
}

// The short status of a card: the minute while the ball is in play, else
// a short label, or the kick-off time of a match not yet started.
function statusShort(match) {
  if (PLAYING_STATUSES.has(match.status) && Number.isInteger(match.minute)) {
    return minuteText(match.minute, match.stoppage);
  }
  if (match.status === "SCHEDULED" && match.kickoff) {
    const time = formatKickoff(match.kickoff, { hour: "2-digit", minute: "2-digit" });
    if (time) {
      return time;
    }
  }
  const key = `status.short.${match.status}`;
  return hasMessage(key) ? t(key) : statusLabel(match.status);
}

function statusClass(status) {
  if (PLAYING_STATUSES.has(status)) {
    return "is-playing";
  }
  if (LIVE_STATUSES.has(status)) {
    return "is-paused";
  }
  return status === "FINISHED" ? "is-finished" : "is-other";
}

function formatKickoff(kickoff, options) {
  const date = new Date(kickoff);
  if (Number.isNaN(date.getTime())) {
    return "";
  }
  return new Intl.DateTimeFormat(LOCALES[language], options).format(date);
}

function scoreText(match) {
  return `${goals(match, "home")}–${goals(match, "away")}`;
}

function matchLabel(match) {
  return t("match.label", {
    home: teamName(match, "home"),
    away: teamName(match, "away"),
    homeScore: goals(match, "home"),
    awayScore: goals(match, "away"),
    status: PLAYING_STATUSES.has(match.status) ? `${statusLabel(match.status)} ${statusShort(match)}` : statusLabel(match.status),
  });
}

// Restart the flash animation even when a second goal comes within FLASH_MS.
const flashTimers = new WeakMap();
function flash(node) {
  clearTimeout(flashTimers.get(node));
  node.classList.remove("goal-flash");
  void node.offsetWidth;
  node.classList.add("goal-flash");
  flashTimers.set(node, setTimeout(() => node.classList.remove("goal-flash"), FLASH_MS));
}

function announce(text) {
  const announcer = byId("announcer");
  // Emptying first makes screen readers announce a repeated text again.
  announcer.textContent = "";
  setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

function scoredSides(previous, match) {
  if (!isMatchDocument(previous)) {
    return [];
  }
  return SIDES.filter((side) => goals(match, side) > goals(previous, side));
}

// --- the board ------------------------------------------------------------------

// Live matches first, then those not started, then the rest, then finished ones.
function statusRank(status) {
  if (LIVE_STATUSES.has(status)) {
    return 0;
  }
  if (status === "SCHEDULED") {
    return 1;
  }
  return status === "FINISHED" ? 3 : 2;
}

function sortKey(channel) {
  const match = matches.get(channel).document;
  return [statusRank(match.status), match.kickoff || "", matchIdOf(channel)];
}

function compareChannels(left, right) {
  const a = sortKey(left);
  const b = sortKey(right);
  return a[0] - b[0] || a[1].localeCompare(b[1]) || a[2].localeCompare(b[2], undefined, { numeric: true });
}

function sectionFor(match) {
  const code = match.competition?.code || "?";
  let section = sections.get(code);
  if (!section) {
    const headingId = `competition-${code.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    section = element("section", { class: "competition", "aria-labelledby": headingId, "data-competition": code }, [
      element("h3", { id: headingId, class: "competition-name" }),
      element("ul", { class: "match-list" }),
    ]);
    sections.set(code, section);
  }
  section.querySelector("h3").textContent = match.competition?.name || code;
  return section;
}

function placeSections() {
  const container = byId("competitions");
  const ordered = [...sections.values()]
    .filter((section) => section.querySelector("ul").children.length > 0)
    .sort((a, b) => a.querySelector("h3").textContent.localeCompare(b.querySelector("h3").textContent, LOCALES[language]));
  const current = [...container.children];
  if (ordered.length !== current.length || ordered.some((section, index) => section !== current[index])) {
    container.replaceChildren(...ordered);
  }
  byId("board-empty").hidden = ordered.length > 0;
}

function placeCard(card, section) {
  const list = section.querySelector("ul");
  if (card.parentElement !== list) {
    const oldList = card.parentElement;
    list.append(card);
    if (oldList && oldList.children.length === 0) {
      oldList.closest("section")?.remove();
    }
  }
  const ordered = [...list.children].sort((a, b) => compareChannels(a.dataset.channel, b.dataset.channel));
  if (ordered.some((item, index) => item !== list.children[index])) {
    list.append(...ordered);
  }
}

// Build a card's elements once. Updates change their text in place, so a
// focused card keeps the keyboard focus while the match goes on.
function createCard(channel) {
  const teamCell = (side) =>
    element("span", { class: `team team-${side}` }, [
      element("span", { class: "team-name" }),
      element("span", { class: "team-short", "aria-hidden": "true" }),
    ]);
  const link = element("a", { class: "match-card", href: matchHash(channel) }, [
    element("span", { class: "card-status" }),
    teamCell("home"),
    element("span", { class: "score" }, [
      element("span", { class: "goals", "data-side": "home" }),
      element("span", { class: "score-separator", "aria-hidden": "true" }, "–"),
      element("span", { class: "goals", "data-side": "away" }),
    ]),
    teamCell("away"),
    element("span", { class: "card-version" }),
  ]);
  return element("li", { class: "match-item", "data-channel": channel }, link);
}

function setText(node, text) {
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

function fillCard(card, entry) {
  const match = entry.document;
  card.dataset.status = match.status || "";
  card.dataset.version = String(entry.version);
  const link = card.firstElementChild;
  link.setAttribute("aria-label", matchLabel(match));
  const status = link.querySelector(".card-status");
  status.className = `card-status ${statusClass(match.status)}`;
  setText(status, statusShort(match));
  for (const side of SIDES) {
    setText(link.querySelector(`.team-${side} .team-name`), teamName(match, side));
    setText(link.querySelector(`.team-${side} .team-short`), match.teams?.[side]?.short || teamName(match, side));
    setText(link.querySelector(`.goals[data-side="${side}"]`), String(goals(match, side)));
  }
  setText(link.querySelector(".card-version"), t("version.short", { version: entry.version }));
}

function renderCard(channel) {
  const entry = matches.get(channel);
  let card = cards.get(channel);
  if (!card) {
    card = createCard(channel);
    cards.set(channel, card);
  }
  fillCard(card, entry);
  placeCard(card, sectionFor(entry.document));
}

function renderBoard() {
  for (const channel of matches.keys()) {
    renderCard(channel);
  }
  placeSections();
}

// --- the match view -------------------------------------------------------------

function eventLabel(event) {
  if (event.type === "goal" && event.detail && event.detail !== "normal") {
    return t(`event.goal.${event.detail}`, {}, t("event.goal"));
  }
  if (event.type === "shootout_kick") {
    return t(event.scored === false ? "event.shootout_kick.missed" : "event.shootout_kick.scored");
  }
  return t(`event.${event.type}`, {}, String(event.type || "").replace(/_/g, " "));
}

function eventRow(match, event) {
  const side = event.team === "away" ? "away" : "home";
  const players = [];
  if (event.type === "substitution" && event.player && event.player_out) {
    players.push(t("event.substitution.players", { player: event.player, player_out: event.player_out }));
  } else if (event.player) {
    players.push(event.player);
  }
  if (event.assist) {
    players.push(t("event.assist", { assist: event.assist }));
  }
  const type = String(event.type || "other").replace(/[^a-z_]/g, "");
  return element("li", { class: `event event-${type} side-${side}`, "data-event-id": event.id }, [
    element("span", { class: "event-minute" }, minuteText(event.minute, event.stoppage)),
    element("span", { class: "event-text" }, [
      element("span", { class: `event-icon icon-${type}`, "aria-hidden": "true" }),
      element("span", { class: "event-kind" }, eventLabel(event)),
      players.length ? element("span", { class: "event-player" }, players.join(" · ")) : null,
      element("span", { class: "visually-hidden" }, ` (${teamName(match, side)})`),
    ]),
  ]);
}

function renderTimeline(match) {
  const events = Array.isArray(match.events) ? match.events : [];
  // Newest first, as live tickers show them.
  byId("timeline").replaceChildren(...events.map((event) => eventRow(match, event)).reverse());
  byId("timeline-empty").hidden = events.length > 0;
}

function statisticLabel(name) {
  return t(`statistic.${name}`, {}, name.replace(/_/g, " "));
}

function renderStatistics(match) {
  const statistics = match.statistics && typeof match.statistics === "object" ? match.statistics : {};
  const rows = [];
  for (const [name, pair] of Object.entries(statistics)) {
    if (!pair || typeof pair !== "object") {
      continue;
    }
    const home = typeof pair.home === "number" ? pair.home : null;
    const away = typeof pair.away === "number" ? pair.away : null;
    const total = (home || 0) + (away || 0);
    const homeShare = total > 0 ? ((home || 0) / total) * 100 : 50;
    const homeBar = element("span", { class: "bar-home" });
    const awayBar = element("span", { class: "bar-away" });
    homeBar.style.width = `${homeShare}%`;
    awayBar.style.width = `${100 - homeShare}%`;
    rows.push(
      element("div", { class: "statistic", "data-statistic": name }, [
        element("dt", {}, statisticLabel(name)),
        element("dd", { class: "statistic-home" }, [
          element("span", { class: "visually-hidden" }, `${teamName(match, "home")}: `),
          home === null ? "–" : String(home),
        ]),
        element("dd", { class: "statistic-bar", "aria-hidden": "true" }, [homeBar, awayBar]),
        element("dd", { class: "statistic-away" }, [
          element("span", { class: "visually-hidden" }, `${teamName(match, "away")}: `),
          away === null ? "–" : String(away),
        ]),
      ]),
    );
  }
  byId("statistics").replaceChildren(...rows);
  byId("statistics-empty").hidden = rows.length > 0;
}

function playerItem(player) {
  return element("li", { class: "player" }, [
    element("span", { class: "shirt" }, Number.isInteger(player.number) ? String(player.number) : ""),
    element("span", { class: "player-name" }, player.name || ""),
    player.position ? element("span", { class: "position" }, player.position) : null,
  ]);
}

function renderLineups(match) {
  const lineups = match.lineups && typeof match.lineups === "object" ? match.lineups : {};
  const columns = SIDES.map((side) => {
    const players = Array.isArray(lineups[side]) ? lineups[side].filter((p) => p && typeof p === "object") : [];
    const starters = players.filter((player) => player.starter !== false);
    const substitutes = players.filter((player) => player.starter === false);
    const headingId = `lineup-${side}-heading`;
    return element("section", { class: `lineup lineup-${side}`, "aria-labelledby": headingId }, [
      element("h4", { id: headingId }, teamName(match, side)),
      players.length === 0 ? element("p", { class: "empty" }, t("lineups.empty")) : null,
      starters.length ? element("ol", { class: "players" }, starters.map(playerItem)) : null,
      substitutes.length ? element("h5", {}, t("lineups.substitutes")) : null,
      substitutes.length ? element("ol", { class: "players substitutes" }, substitutes.map(playerItem)) : null,
    ]);
  });
  byId("lineups").replaceChildren(...columns);
}

function renderMatchHeader(match, version) {
  byId("match-competition").textContent = match.competition?.name || "";
  byId("match-home").textContent = teamName(match, "home");
  byId("match-away").textContent = teamName(match, "away");

  const score = byId("match-score");
  score.textContent = scoreText(match);
  score.setAttribute("aria-label", `${goals(match, "home")} – ${goals(match, "away")}`);
  const status = byId("match-status");
  status.textContent = PLAYING_STATUSES.has(match.status)
    ? `${statusLabel(match.status)} · ${statusShort(match)}`
    : statusLabel(match.status);
  status.className = `match-status ${statusClass(match.status)}`;

  const periods = [];
  if (match.status === "SCHEDULED" && match.kickoff) {
    const time = formatKickoff(match.kickoff, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
    if (time) {
      periods.push(t("match.kickoff", { time }));
    }
  }
  const halfTime = match.score?.half_time;
  if (halfTime && Number.isInteger(halfTime.home)) {
    periods.push(t("match.halfTime", halfTime));
  }
  const penalties = match.score?.penalties;
  if (penalties && Number.isInteger(penalties.home)) {
    periods.push(t("match.penalties", penalties));
  }
  byId("match-periods").textContent = periods.join(" · ");

  const versionLine = byId("match-version");
  versionLine.textContent = t("version", { version });
  versionLine.dataset.version = String(version);
  document.title = `${teamName(match, "home")} ${scoreText(match)} ${teamName(match, "away")} · ${t("page.title")}`;
}

function renderMatch() {
  if (openChannel === null) {
    return;
  }
  const entry = matches.get(openChannel);
  const body = byId("match-body");
  const message = byId("match-message");
  if (!entry || !isMatchDocument(entry.document)) {
    body.hidden = true;
    message.hidden = false;
    message.textContent = subscriptionLive() ? t("match.missing") : t("match.loading");
    shownMatch = { channel: null, document: null, language: null };
    return;
  }

  message.hidden = true;
  body.hidden = false;
  const match = entry.document;
  // Documents are never mutated, so an unchanged part is the same object.
  const previous = shownMatch.channel === openChannel && shownMatch.language === language ? shownMatch.document : null;
  renderMatchHeader(match, entry.version);

  if (!previous || previous.events !== match.events || previous.teams !== match.teams) {
    renderTimeline(match);
  }
  if (!previous || previous.statistics !== match.statistics || previous.teams !== match.teams) {
    renderStatistics(match);
  }
  if (!previous || previous.lineups !== match.lineups || previous.teams !== match.teams) {
    renderLineups(match);
  }

  shownMatch = { channel: openChannel, document: match, language };
  if (focusMatchHeading) {
    focusMatchHeading = false;
    byId("match-heading").focus();
  }
}

// --- connection, routing, language ---------------------------------------------

let subscription = null;

function subscriptionLive() {
  return subscription !== null && subscription.state === State.LIVE;
}

function showState(state) {
  const connection = byId("connection");
  connection.dataset.state = state;
  byId("connection-text").textContent = t(`state.${state}`, {}, state);
}

function onDocument(channel, match, version, change) {
  if (!channel.startsWith(MATCH_PREFIX) || !isMatchDocument(match)) {
    return;
  }
  matches.set(channel, { document: match, version });
  renderCard(channel);
  placeSections();
  const scored = scoredSides(change.previous, match);
  if (scored.length) {
    flash(cards.get(channel));
    announce(t("goal.announcement", {
      home: teamName(match, "home"),
      away: teamName(match, "away"),
      homeScore: goals(match, "home"),
      awayScore: goals(match, "away"),
    }));
  }
  if (channel === openChannel) {
    renderMatch();
    if (scored.length) {
      flash(byId("match-score"));
    }
  }
}

function route() {
  const found = /^#\/match\/(.+)$/.exec(location.hash);
  const previousChannel = openChannel;
  openChannel = found ? MATCH_PREFIX + decodeURIComponent(found[1]) : null;
  byId("board").hidden = openChannel !== null;
  byId("match").hidden = openChannel === null;
  if (openChannel !== null) {
    shownMatch = { channel: null, document: null, language: null };
    focusMatchHeading = true;
    renderMatch();
  } else {
    focusMatchHeading = false;
    document.title = `${t("page.title")} · livegate`;
    const card = previousChannel && cards.get(previousChannel);
    card?.querySelector("a")?.focus();
  }
}

function applyLanguage(next) {
  language = LANGUAGES.includes(next) ? next : "en";
  t = translator(language);
  document.documentElement.lang = language;
  document.body.dataset.language = language;
  for (const node of document.querySelectorAll("[data-text]")) {
    node.textContent = t(node.dataset.text);
  }
  byId("languages").setAttribute("aria-label", t("page.language"));
  for (const button of document.querySelectorAll("[data-language]")) {
    button.setAttribute("aria-pressed", String(button.dataset.language === language));
  }
  showState(subscription ? subscription.state : State.CONNECTING);
  renderBoard();
  if (openChannel === null) {
    document.title = `${t("page.title")} · livegate`;
  } else {
    renderMatch();
  }
}

function savedLanguage() {
  try {
    return localStorage.getItem(LANGUAGE_STORAGE_KEY);
  } catch {
    return null; // Storage can be disabled; the browser's languages still apply.
  }
}

function saveLanguage(value) {
  try {
    localStorage.setItem(LANGUAGE_STORAGE_KEY, value);
  } catch {
    // Not saved: the choice lasts until the page is reloaded.
  }
}

function pauseWhileHidden() {
  let timer = null;
  document.addEventListener("visibilitychange", () => {
    clearTimeout(timer);
    if (document.hidden) {
      timer = setTimeout(() => subscription.pause(), HIDDEN_PAUSE_MS);
    } else {
      subscription.resume();
    }
  });
}

function start() {
  applyLanguage(pickLanguage(navigator.languages || [navigator.language], savedLanguage()));
  for (const button of document.querySelectorAll("[data-language]")) {
    button.addEventListener("click", () => {
      saveLanguage(button.dataset.language);
      applyLanguage(button.dataset.language);
    });
  }
  window.addEventListener("hashchange", route);
  subscription = subscribe({
    url: "/v1/stream",
    channels: [MATCH_PATTERN],
    onDocument,
    onState: (state) => {
      showState(state);
      if (state === State.LIVE) {
        renderMatch();
      }
    },
    onError: (error) => console.warn("livegate:", error.message),
  });
  pauseWhileHidden();
  route();
  // For debugging from the browser console.
  window.livegateScoreboard = { subscription, matches };
}

start();
