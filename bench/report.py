"""Render a results file of ``python -m bench run`` as Markdown tables.

``render_page`` replaces the part of docs/benchmarks.md between the
``bench-results`` markers and leaves the rest of the page as written.
Peers are shown with ratios to livegate's figure in the same run: above 1
means the peer used more (CPU, memory) or took longer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.runner import RESULTS_DIR

PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN = "<!-- bench-results:begin (written by python -m bench report) -->"
END = "<!-- bench-results:end -->"
KIB = 1024


def newest_results() -> Path | None:
    files = sorted(RESULTS_DIR.glob("*.json"))
    return files[-1] if files else None


def _kib(value) -> str:
    return "–" if value is None else f"{value / KIB:.1f}"


def _ms(value) -> str:
    """Format seconds as milliseconds, with one decimal below 10 ms."""
    if value is None:
        return "–"
    if value >= 0.01:
        return f"{value * 1000:.0f}"
    return f"{value * 1000:.1f}"


def _num(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ratio(value, base) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def _failure(result: dict) -> str | None:
    error = result.get("error")
    if not error:
        return None
    message = error["message"].splitlines()[0][:160]
    return f"failed at {error['stage']}: {message}"


def _phase(result: dict, kind: str) -> dict | None:
    for phase in result.get("phases") or []:
        if phase["kind"] == kind:
            return phase
    return None


def _by(results: list[dict], name: str) -> list[dict]:
    return [r for r in results if r["scenario"]["name"] == name]


def _livegate(rows: list[dict]) -> dict | None:
    for row in rows:
        if row["scenario"]["target"] == "livegate" and not row.get("error"):
            return row
    return None


def _held(result: dict) -> str:
    text = f"{result.get('streams_held', 0):,}"
    if (result.get("ramp") or {}).get("ramp_timed_out"):
        text += " (set-up timed out)"
    return text


def _failures(result: dict) -> str:
    failures = (result.get("loadgen") or {}).get("failures") or {}
    if not failures:
        return "0"
    return ", ".join(f"{count} {reason}" for reason, count in sorted(failures.items()))


def matchday_table(results: list[dict]) -> list[str]:
    rows = _by(results, "matchday")
    if not rows:
        return []
    scenario = rows[0]["scenario"]
    phase_seconds = dict(scenario["phases"]).get("matchday")
    lines = [f"### Match day: {scenario['clients']:,} streams, {scenario['workers']} workers, "
             f"{phase_seconds:.0f} s window", "",
             "| target | streams held | PSS per stream (KiB) | Redis PSS per stream (KiB) "
             "| CPU s per 1,000 events, pod | pod + Redis | p50 ms | p99 ms | max ms | events "
             "| CPU ratio | memory ratio | p99 ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    base = _livegate(rows)
    base_phase = _phase(base, "matchday") if base else None
    for row in rows:
        name = row["scenario"]["target"]
        failure = _failure(row)
        phase = _phase(row, "matchday")
        if failure and not phase:
            lines.append(f"| {name} | {failure} |" + " |" * 11)
            continue
        latency = phase["latency"]
        lines.append(
            f"| {name} | {_held(row)} | {_kib(row.get('pss_per_stream_bytes'))} "
            f"| {_kib(row.get('redis_pss_per_stream_bytes'))} "
            f"| {_num(phase['cpu_per_1000_events'])} "
            f"| {_num(phase['cpu_with_redis_per_1000_events'])} | {_ms(latency.get('p50'))} "
            f"| {_ms(latency.get('p99'))} | {_ms(latency.get('max'))} | {phase['events']:,} "
            f"| {_ratio(phase['cpu_per_1000_events'], base_phase and base_phase['cpu_per_1000_events'])} "
            f"| {_ratio(row.get('pss_per_stream_bytes'), base and base.get('pss_per_stream_bytes'))} "
            f"| {_ratio(latency.get('p99'), base_phase and base_phase['latency'].get('p99'))} |")
    return lines + [""] + burst_table(rows, base)


def burst_table(rows: list[dict], base: dict | None) -> list[str]:
    lines = ["### Burst: goals in the most subscribed match, on the match day streams", "",
              "| target | recipients per goal | goals | events | p50 ms | p99 ms | max ms "
              "| p99 ratio |", "|---|---|---|---|---|---|---|---|"]
    base_burst = _phase(base, "burst") if base else None
    for row in rows:
        phase = _phase(row, "burst")
        if not phase:
            lines.append(f"| {row['scenario']['target']} | {_failure(row) or 'not run'} |"
                         + " |" * 6)
            continue
        latency = phase["latency"]
        lines.append(
            f"| {row['scenario']['target']} | {phase.get('expected_recipients_per_publish', '–')} "
            f"| {phase['publishes']} | {phase['events']:,} | {_ms(latency.get('p50'))} "
            f"| {_ms(latency.get('p99'))} | {_ms(latency.get('max'))} "
            f"| {_ratio(latency.get('p99'), base_burst and base_burst['latency'].get('p99'))} |")
    return lines + [""]


def throughput_table(results: list[dict]) -> list[str]:
    rows = _by(results, "throughput")
    if not rows:
        return []
    scenario = rows[0]["scenario"]
    lines = [f"### Throughput: {scenario['workload']['rate']:.0f} publishes per second, "
             f"{scenario['clients']:,} streams spread evenly over "
             f"{scenario['workload']['channels']} channels", "",
             "| target | streams held | events per s | CPU s per 1,000 events, pod | pod + Redis "
             "| p50 ms | p99 ms | max ms | CPU ratio |", "|---|---|---|---|---|---|---|---|---|"]
    base = _livegate(rows)
    base_phase = _phase(base, "throughput") if base else None
    for row in rows:
        phase = _phase(row, "throughput")
        if not phase:
            lines.append(f"| {row['scenario']['target']} | {_failure(row) or 'not run'} |"
                         + " |" * 7)
            continue
        latency = phase["latency"]
        rate = phase["events"] / phase["seconds"] if phase["seconds"] else None
        lines.append(
            f"| {row['scenario']['target']} | {_held(row)} | {_num(rate, 0)} "
            f"| {_num(phase['cpu_per_1000_events'])} "
            f"| {_num(phase['cpu_with_redis_per_1000_events'])} | {_ms(latency.get('p50'))} "
            f"| {_ms(latency.get('p99'))} | {_ms(latency.get('max'))} "
            f"| {_ratio(phase['cpu_per_1000_events'], base_phase and base_phase['cpu_per_1000_events'])} |")
    return lines + [""]


def storm_table(results: list[dict]) -> list[str]:
    rows = _by(results, "storm")
    if not rows:
        return []
    scenario = rows[0]["scenario"]
    lines = [f"### Connect storm: {scenario['clients']:,} clients at {scenario['rate']:.0f} "
             "per second, no publishes", "",
             "| target | established | failures | headers p50 ms | headers p99 ms "
             "| first snapshot p50 ms | first snapshot p99 ms | pod CPU s during the ramp "
             "| first snapshot p99 ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    base = _livegate(rows)
    base_p99 = base["loadgen"]["time_to_first_snapshot"].get("p99") if base else None
    for row in rows:
        loadgen = row.get("loadgen")
        if not loadgen:
            lines.append(f"| {row['scenario']['target']} | {_failure(row) or 'no result'} |"
                         + " |" * 7)
            continue
        headers = loadgen["time_to_headers"]
        snapshot = loadgen["time_to_first_snapshot"]
        lines.append(
            f"| {row['scenario']['target']} | {loadgen['established']:,} | {_failures(row)} "
            f"| {_ms(headers.get('p50'))} | {_ms(headers.get('p99'))} "
            f"| {_ms(snapshot.get('p50'))} | {_ms(snapshot.get('p99'))} "
            f"| {_num(row.get('ramp_cpu_seconds'), 2)} | {_ratio(snapshot.get('p99'), base_p99)} |")
    return lines + [""]


def sweep_table(results: list[dict]) -> list[str]:
    rows = _by(results, "sweep")
    if not rows:
        return []
    scenario = rows[0]["scenario"]
    lines = [f"### Sizing sweep: livegate workers against {scenario['clients']:,} match day "
             "streams", "",
             "| workers | streams held | failures | PSS per stream (KiB) "
             "| CPU s per 1,000 events | p99 ms |", "|---|---|---|---|---|---|"]
    for row in rows:
        phase = _phase(row, "matchday")
        if not phase:
            lines.append(f"| {row['scenario']['workers']} | {_failure(row) or 'not run'} |"
                         + " |" * 4)
            continue
        lines.append(
            f"| {row['scenario']['workers']} | {_held(row)} | {_failures(row)} "
            f"| {_kib(row.get('pss_per_stream_bytes'))} | {_num(phase['cpu_per_1000_events'])} "
            f"| {_ms(phase['latency'].get('p99'))} |")
    return lines + [""]


def soak_table(results: list[dict]) -> list[str]:
    rows = _by(results, "soak")
    if not rows:
        return []
    lines = ["### Memory under reconnects", "",
             "| streams | window s | reconnecting per minute | reconnects | PSS drift "
             "| streams open after all left | seconds until then |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        scenario = row["scenario"]
        phase = _phase(row, "matchday")
        if not phase:
            lines.append(f"| {scenario['clients']:,} | {_failure(row) or 'not run'} |" + " |" * 5)
            continue
        drift = row.get("memory_drift")
        after = row.get("open_streams_after_leave") or {}
        lines.append(
            f"| {scenario['clients']:,} | {phase['seconds']:.0f} "
            f"| {scenario['churn_per_minute']:.0%} | {(row.get('loadgen') or {}).get('reconnects', '–')} "
            f"| {'–' if drift is None else f'{drift:+.1%}'} | {after.get('open_streams', '–')} "
            f"| {after.get('seconds', '–')} |")
    return lines + [""]


def _compression(row: dict) -> str:
    # Results files written before streams could be compressed have no such field.
    return row["scenario"].get("compression", "off")


def _body(row: dict) -> str:
    return "gzip" if _compression(row) == "gzip" else "uncompressed"


def replay_table(results: list[dict]) -> list[str]:
    rows = _by(results, "replay")
    if not rows:
        return []
    lines = ["### Bandwidth on a replayed real match", "",
             "The stream's body bytes (after chunked decoding, before gzip decoding) against "
             "uncompressed full documents sent at every change, and at every poll of the "
             "partner API.", "",
             "| match | stream body | polls | changes | bytes received "
             "| full documents per change | share | full documents per poll | share |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        phase = _phase(row, "replay")
        if not phase:
            lines.append(f"| 2022 World Cup final | {_body(row)} | {_failure(row) or 'not run'} |"
                         + " |" * 6)
            continue
        received = phase["payload_bytes"]
        per_change = phase.get("full_document_bytes") or 0
        per_poll = phase.get("poll_document_bytes") or 0
        lines.append(
            f"| 2022 World Cup final | {_body(row)} | {phase.get('documents', '–')} "
            f"| {phase.get('changes', '–')} | {received:,} | {per_change:,} "
            f"| {_share(received, per_change)} | {per_poll:,} | {_share(received, per_poll)} |")
    return lines + [""]


def gzip_table(results: list[dict]) -> list[str]:
    rows = _by(results, "gzip")
    if not rows:
        return []
    scenario = rows[0]["scenario"]
    phase_seconds = dict(scenario["phases"]).get("matchday")
    lines = [f"### Cost of gzip: match day, {scenario['clients']:,} streams, "
             f"{scenario['workers']} workers, {phase_seconds:.0f} s window", "",
             "| stream body | streams held | PSS per stream (KiB) | CPU s per 1,000 events, pod "
             "| p50 ms | p99 ms | events | body bytes per event | CPU ratio | memory ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base = next((row for row in rows if _compression(row) == "off" and not row.get("error")),
                None)
    base_phase = _phase(base, "matchday") if base else None
    for row in rows:
        phase = _phase(row, "matchday")
        if not phase:
            lines.append(f"| {_body(row)} | {_failure(row) or 'not run'} |" + " |" * 8)
            continue
        latency = phase["latency"]
        per_event = phase["payload_bytes"] / phase["events"] if phase["events"] else None
        lines.append(
            f"| {_body(row)} | {_held(row)} | {_kib(row.get('pss_per_stream_bytes'))} "
            f"| {_num(phase['cpu_per_1000_events'])} | {_ms(latency.get('p50'))} "
            f"| {_ms(latency.get('p99'))} | {phase['events']:,} | {_num(per_event, 0)} "
            f"| {_ratio(phase['cpu_per_1000_events'], base_phase and base_phase['cpu_per_1000_events'])} "
            f"| {_ratio(row.get('pss_per_stream_bytes'), base and base.get('pss_per_stream_bytes'))} |")
    return lines + [""]


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "–"


def _target_row(results: list[dict], name: str, target: str = "livegate",
                compression: str = "off") -> dict | None:
    for row in _by(results, name):
        if (row["scenario"]["target"] == target and _compression(row) == compression
                and not row.get("error")):
            return row
    return None


def _cpu(row: dict | None, kind: str) -> float | None:
    phase = _phase(row, kind) if row else None
    return phase["cpu_per_1000_events"] if phase else None


def target_checks(results: list[dict]) -> list[tuple[str, str, bool | None]]:
    """Return (target, livegate's measured figure, met) for each target; None when not measured."""
    checks = []
    matchday = _target_row(results, "matchday")
    nchan_matchday = _target_row(results, "matchday", "nchan")
    flask_matchday = _target_row(results, "matchday", "flask-sse")
    throughput = _target_row(results, "throughput")
    nchan_throughput = _target_row(results, "throughput", "nchan")
    flask_throughput = _target_row(results, "throughput", "flask-sse")

    per_stream = matchday.get("pss_per_stream_bytes") if matchday else None
    checks.append(("at most 20 KiB PSS per stream", f"{_kib(per_stream)} KiB",
                   None if per_stream is None else per_stream <= 20 * KIB))
    ours, theirs = _cpu(throughput, "throughput"), _cpu(nchan_throughput, "throughput")
    checks.append(("CPU per event no more than nchan's under throughput",
                   f"{_ratio(ours, theirs)} nchan's",
                   None if ours is None or theirs is None else ours <= theirs))
    ours, theirs = _cpu(matchday, "matchday"), _cpu(nchan_matchday, "matchday")
    checks.append(("CPU per event at most 1.5× nchan's under match day",
                   f"{_ratio(ours, theirs)} nchan's",
                   None if ours is None or theirs is None else ours <= 1.5 * theirs))
    for kind, ours_row, flask_row in (("matchday", matchday, flask_matchday),
                                      ("throughput", throughput, flask_throughput)):
        ours, theirs = _cpu(ours_row, kind), _cpu(flask_row, kind)
        checks.append((f"CPU per event at least 5× lower than Flask-SSE's ({kind})",
                       f"Flask-SSE uses {_ratio(theirs, ours)} livegate's",
                       None if ours is None or theirs is None else theirs >= 5 * ours))
    phase = _phase(matchday, "matchday") if matchday else None
    p99 = phase["latency"].get("p99") if phase else None
    checks.append(("match day p99 at most 50 ms", f"{_ms(p99)} ms",
                   None if p99 is None else p99 <= 0.05))
    phase = _phase(matchday, "burst") if matchday else None
    p99 = phase["latency"].get("p99") if phase else None
    checks.append(("burst p99 at most 200 ms", f"{_ms(p99)} ms",
                   None if p99 is None else p99 <= 0.2))
    storm = _target_row(results, "storm")
    loadgen = storm.get("loadgen") if storm else None
    p99 = loadgen["time_to_first_snapshot"].get("p99") if loadgen else None
    failures = sum(loadgen["failures"].values()) if loadgen else None
    checks.append(("storm: first snapshot p99 at most 1 s, no failures",
                   f"{_ms(p99)} ms, {failures if failures is not None else '–'} failures",
                   None if p99 is None else p99 <= 1.0 and failures == 0))
    soak = _target_row(results, "soak")
    drift = soak.get("memory_drift") if soak else None
    after = (soak or {}).get("open_streams_after_leave") or {}
    checks.append(("PSS flat within 5 % under reconnects, gauge back to zero",
                   "–" if drift is None else f"{drift:+.1%}, {after.get('open_streams', '–')} open",
                   None if drift is None else abs(drift) <= 0.05 and after.get("open_streams") == 0))
    # The bandwidth target is judged on the gzip stream, which the gateway
    # sends with LIVEGATE_STREAM_COMPRESSION=gzip. The figure without gzip
    # is shown beside it.
    gzip_share = _replay_share(_target_row(results, "replay", compression="gzip"))
    plain_share = _replay_share(_target_row(results, "replay"))
    if gzip_share is None:
        measured = "–" if plain_share is None else f"{plain_share:.1%} without gzip"
    else:
        measured = f"{gzip_share:.1%} with gzip"
        if plain_share is not None:
            measured += f" ({plain_share:.1%} without)"
    checks.append(("replayed match at most 10 % of full documents sent at every change "
                   "(with gzip)", measured,
                   None if gzip_share is None else gzip_share <= 0.10))
    return checks


def _replay_share(row: dict | None) -> float | None:
    """Return the replay stream's body bytes as a share of full documents at every change."""
    phase = _phase(row, "replay") if row else None
    if not phase or not phase.get("full_document_bytes"):
        return None
    return phase["payload_bytes"] / phase["full_document_bytes"]


def targets_table(results: list[dict], mode: str) -> list[str]:
    lines = ["### Against the targets", ""]
    if mode != "full":
        lines += [f"A {mode} run cannot meet or miss a target: its sizes are not the targets' "
                  "sizes. The column shows what this run measured.", ""]
    lines += ["| target | livegate in this run | status |", "|---|---|---|"]
    for name, measured, met in target_checks(results):
        if mode != "full":
            status = "not claimed"
        elif met is None:
            status = "not measured"
        else:
            status = "met" if met else "not met"
        lines.append(f"| {name} | {measured} | {status} |")
    return lines + [""]


def render(results_path: Path) -> str:
    document = json.loads(results_path.read_text())
    results = document["scenarios"]
    machine = document["machine"]
    end = document.get("machine_end", machine)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(document["started_at"]))
    versions = ", ".join(f"{name} {version}" for name, version in document["versions"].items()
                         if version)
    mode = document["mode"]

    heading = {"smoke": "Smoke run: checks the harness, not a result",
               "short": "Short run: a quick comparison, not a result"}.get(mode, "Full run")
    lines = [
        BEGIN, "", f"## {heading}", "",
        f"- Command: `{document['command']}`, started {started}, results file "
        f"`bench/results/{results_path.name}`.",
        f"- Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}.",
        f"- Load average (1, 5, 15 min) at the start {machine['load_average']}, at the end "
        f"{end['load_average']}. The load generator and the publisher share the machine with "
        "the server under test.",
        f"- Software: {versions}.",
    ]
    if mode != "full":
        lines.append("- Sizes are far below the targets, so fixed costs dominate the per-stream "
                     "and per-event figures; read them as a check that every part runs.")
    lines.append("")

    lines += targets_table(results, mode)
    for table in (matchday_table, throughput_table, storm_table, sweep_table, soak_table,
                  replay_table, gzip_table):
        lines += table(results)
    lines.append(END)
    return "\n".join(lines)


def render_page(results_path: Path, page: Path) -> None:
    """Replace the results section of ``page`` with the tables of ``results_path``."""
    section = render(results_path)
    text = page.read_text() if page.exists() else ""
    if BEGIN in text and END in text:
        before = text[:text.index(BEGIN)]
        after = text[text.index(END) + len(END):]
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    page.write_text(text)
