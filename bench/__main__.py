"""Command line of the benchmark suite. Its commands:

    python -m bench run --full      every scenario group but gzip, at the target sizes
    python -m bench run --short     a quick comparison after a change (a few minutes)
    python -m bench run --smoke     hundreds of streams: checks the harness itself
    python -m bench plan --full     list the scenarios and estimate the run's time
    python -m bench run --full --targets livegate --only gzip
                                    what gzip streams cost, against uncompressed ones
    python -m bench report          render the newest results into docs/benchmarks.md

Results are JSON files in bench/results/ (git-ignored), one per run.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from bench import report, runner


def _mode(options: argparse.Namespace) -> str:
    if options.full:
        return "full"
    if options.short:
        return "short"
    return "smoke"


def _suite(options: argparse.Namespace):
    targets = tuple(options.targets.split(",")) if options.targets else runner.PEER_TARGETS
    unknown = [name for name in targets if name not in runner.TARGETS]
    if unknown:
        raise SystemExit(f"unknown target {unknown[0]!r}; expected one of "
                         f"{', '.join(sorted(runner.TARGETS))}")
    groups = tuple(options.only.split(",")) if options.only else None
    if groups:
        unknown = [group for group in groups if group not in runner.GROUPS]
        if unknown:
            raise SystemExit(f"unknown scenario group {unknown[0]!r}; expected some of "
                             f"{', '.join(runner.GROUPS)}")
    return runner.build_suite(_mode(options), targets, groups, options.workers)


def _add_suite_options(parser: argparse.ArgumentParser) -> None:
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="target sizes: 10,000 streams")
    size.add_argument("--short", action="store_true", help="1,000 streams, a few minutes")
    size.add_argument("--smoke", action="store_true", help="hundreds of streams (default)")
    parser.add_argument("--targets", help="comma-separated targets (default "
                        f"{','.join(runner.PEER_TARGETS)})")
    parser.add_argument("--only", help="comma-separated scenario groups: matchday, throughput, "
                        "storm, sweep, soak, replay, gzip (default: all of the mode but gzip)")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes of each target outside the sweep (default 2)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the suite and save a results file")
    _add_suite_options(run)
    run.add_argument("--report", action="store_true",
                     help="render docs/benchmarks.md from the results afterwards")
    plan = commands.add_parser("plan", help="list the scenarios of a run and its estimated time")
    _add_suite_options(plan)
    render = commands.add_parser("report", help="render a results file into docs/benchmarks.md")
    render.add_argument("results", nargs="?", help="results JSON (default: the newest)")
    render.add_argument("--page", default=str(report.PAGE), help="Markdown page to update")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    if options.command == "plan":
        suite = _suite(options)
        for scenario in suite:
            print(f"{scenario.name:10} {scenario.target:9} workers={scenario.workers} "
                  f"clients={scenario.clients} rate={scenario.rate:.0f}/s "
                  f"compression={scenario.compression} phases={scenario.phases} "
                  f"~{runner.planned_seconds(scenario):.0f} s")
        total = sum(runner.planned_seconds(s) for s in suite)
        print(f"{len(suite)} scenarios, about {total / 60:.0f} min")
        return 0

    if options.command == "run":
        suite = _suite(options)
        load = os.getloadavg()[0]
        cores = os.cpu_count() or 1
        if load > 0.25 * cores:
            logging.warning("load average %.2f on %d cores: the machine is busy, so these "
                            "numbers are distorted; run on a quiet machine for results", load, cores)
        command = "python -m bench " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
        path = runner.run_suite(_mode(options), suite, command)
        print(path)
        if options.report:
            report.render_page(path, report.PAGE)
        return 0

    path = Path(options.results) if options.results else report.newest_results()
    if path is None:
        print(f"no results in {runner.RESULTS_DIR}; run python -m bench run first",
              file=sys.stderr)
        return 1
    report.render_page(path, Path(options.page))
    print(f"rendered {path} into {options.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
