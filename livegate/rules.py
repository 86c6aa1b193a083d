"""Routing rules: republish a source channel's document under other names.

A rule names a source template and one or more target templates. A
template is a channel name whose segments may be placeholders ``{name}``,
each standing for exactly one segment: the rule

    source = "provider-a/match/{id}"   targets = ["sport-livescore/{id}"]

publishes every document of ``provider-a/match/123`` to
``sport-livescore/123`` as well. Targets may in turn be sources of other
rules. A set of rules in which a publish could come back to a channel it
started from is rejected when it is loaded, naming the rules of the loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from livegate.channels import SEPARATOR, InvalidChannelError, validate_channel

_PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]{0,31})\}$")
_RULE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_TARGETS = 32


class RuleError(ValueError):
    """A rule that cannot be used; the message names the rule."""


@dataclass(frozen=True)
class Template:
    """A channel template: each segment a literal or a placeholder name."""

    text: str
    # (is_placeholder, literal or placeholder name) per segment.
    segments: tuple[tuple[bool, str], ...]

    @property
    def placeholders(self) -> set[str]:
        return {value for is_placeholder, value in self.segments if is_placeholder}

    def match(self, channel: str) -> dict[str, str] | None:
        """Return the placeholder values when ``channel`` matches, else None."""
        parts = channel.split(SEPARATOR)
        if len(parts) != len(self.segments):
            return None
        values: dict[str, str] = {}
        for (is_placeholder, value), part in zip(self.segments, parts):
            if is_placeholder:
                if values.setdefault(value, part) != part:
                    return None
            elif value != part:
                return None
        return values

    def fill(self, values: dict[str, str]) -> str:
        return SEPARATOR.join(values[v] if p else v for p, v in self.segments)

    def may_overlap(self, other: "Template") -> bool:
        """Return whether some channel could match both templates."""
        if len(self.segments) != len(other.segments):
            return False
        for (mine_is_placeholder, mine), (theirs_is_placeholder, theirs) in zip(
            self.segments, other.segments
        ):
            if not mine_is_placeholder and not theirs_is_placeholder and mine != theirs:
                return False
        return True


def parse_template(text: object, what: str) -> Template:
    if not isinstance(text, str) or not text:
        raise RuleError(f"{what} must be a channel template such as 'provider/{{id}}'")
    segments = []
    sample = []
    for segment in text.split(SEPARATOR):
        match = _PLACEHOLDER.match(segment)
        if match:
            segments.append((True, match.group(1)))
            sample.append("x")
        else:
            segments.append((False, segment))
            sample.append(segment)
    try:
        # A template with every placeholder filled by a plain segment must be
        # a valid channel; this checks the literal segments and the length.
        validate_channel(SEPARATOR.join(sample))
    except InvalidChannelError as error:
        raise RuleError(f"{what} {text!r} is not a valid channel template: {error.reason}") \
            from None
    return Template(text, tuple(segments))


@dataclass(frozen=True)
class Rule:
    name: str
    source: Template
    targets: tuple[Template, ...]

    def route(self, channel: str) -> list[str]:
        """Return the target channels of ``channel``, or [] when the source does not match."""
        values = self.source.match(channel)
        if values is None:
            return []
        return [target.fill(values) for target in self.targets]


def make_rule(entry: object, position: int) -> Rule:
    if not isinstance(entry, dict):
        raise RuleError(f"rule {position} must be a table with name, source and targets")
    name = entry.get("name")
    if not isinstance(name, str) or not _RULE_NAME.match(name):
        raise RuleError(f"rule {position} needs a name of 1 to 64 of A-Z a-z 0-9 _ . : -")
    unknown = sorted(set(entry) - {"name", "source", "targets"})
    if unknown:
        raise RuleError(f"rule {name!r} has unknown keys: {', '.join(unknown)}")
    source = parse_template(entry.get("source"), f"rule {name!r} source")
    targets_raw = entry.get("targets")
    if not isinstance(targets_raw, list) or not targets_raw or len(targets_raw) > MAX_TARGETS:
        raise RuleError(f"rule {name!r} needs a list 'targets' of 1 to {MAX_TARGETS} templates")
    targets = tuple(parse_template(t, f"rule {name!r} target") for t in targets_raw)
    for target in targets:
        missing = target.placeholders - source.placeholders
        if missing:
            raise RuleError(f"rule {name!r} target {target.text!r} uses "
                            f"{', '.join(sorted(missing))}, which its source does not capture")
    return Rule(name, source, targets)


class RuleSet:
    """Loaded rules, free of loops."""

    def __init__(self, rules: tuple[Rule, ...] = ()):
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise RuleError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        check_loops(rules)
        self.rules = rules

    def __bool__(self) -> bool:
        return bool(self.rules)

    def route(self, channel: str) -> list[tuple[str, str]]:
        """Return (rule name, target channel) for every republish ``channel`` leads to.

        Follows chains of rules; the loop check guarantees that they end.
        """
        routed: list[tuple[str, str]] = []
        pending = [channel]
        seen = {channel}
        while pending:
            current = pending.pop(0)
            for rule in self.rules:
                for target in rule.route(current):
                    if target in seen:
                        continue
                    seen.add(target)
                    routed.append((rule.name, target))
                    pending.append(target)
        return routed


def check_loops(rules: tuple[Rule, ...]) -> None:
    """Raise RuleError when a target of one rule can lead back, through rules, to itself.

    Rule A leads to rule B when some channel could match both a target of A
    and the source of B; a cycle in that graph is a loop.
    """
    leads_to = {
        rule.name: [
            other.name for other in rules
            if any(target.may_overlap(other.source) for target in rule.targets)
        ]
        for rule in rules
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        path.append(name)
        for following in leads_to[name]:
            if state.get(following) == 1:
                loop = path[path.index(following):] + [following]
                raise RuleError(f"rule {following!r} forms a loop: {' -> '.join(loop)}; "
                                "a publish would come back to a channel it came from, so "
                                "remove one of these rules or change its targets")
            if following not in state:
                visit(following, path)
        path.pop()
        state[name] = 2

    for rule in rules:
        if rule.name not in state:
            visit(rule.name, [])
