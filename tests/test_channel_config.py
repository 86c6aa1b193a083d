"""Unit tests of the channels file: namespaces, views, routing rules and their errors."""

from __future__ import annotations

import pytest

from livegate.channel_config import ChannelConfigError, parse
from livegate.channels import parse_subscription
from livegate.rules import RuleError, RuleSet, make_rule
from livegate.settings import Settings
from livegate.views import ViewError, make_view

SETTINGS = Settings.from_env({})

EXAMPLE = """
[namespaces."sport-livescore"]
log_length = 500
heartbeat_interval = 15
mode = "delta"
max_subscribers = 20000

[namespaces."sport-livescore/private"]
auth = true
heartbeat_interval = 5

[namespaces."ticker"]
mode = "snapshot"

[views.score]
paths = ["/teams", "/score", "/status", "/minute"]

[[rules]]
name = "provider-a"
source = "provider-a/match/{id}"
targets = ["sport-livescore/{id}"]
"""


def load(text: str):
    return parse(text, SETTINGS, "channels.toml")


class TestNamespaces:
    def test_lookup_longest_prefix_and_defaults(self):
        table = load(EXAMPLE).namespaces
        assert table.lookup("sport-livescore/1").log_length == 500
        assert table.lookup("sport-livescore/private/1").heartbeat_interval == 5
        # Keys a namespace leaves out take the defaults, not the enclosing namespace's.
        assert table.lookup("sport-livescore/private/1").log_length == SETTINGS.channel_log_length
        assert table.lookup("sport-livescoreboard").is_default
        other = table.lookup("news/1")
        assert other.is_default
        assert (other.log_length, other.heartbeat_interval, other.auth, other.mode,
                other.max_subscribers) == (200, 20.0, False, "delta", 0)

    def test_heartbeat_shortest_reached(self):
        table = load(EXAMPLE).namespaces
        assert table.heartbeat_interval((parse_subscription("sport-livescore/1"),)) == 15
        assert table.heartbeat_interval((parse_subscription("sport-livescore/**"),)) == 5
        assert table.heartbeat_interval((parse_subscription("*/1"),)) == 15
        assert table.heartbeat_interval((parse_subscription("news/1"),)) == 20

    def test_limited_and_protected(self):
        table = load(EXAMPLE).namespaces
        assert [n.prefix for n in table.limited((parse_subscription("**"),))] == ["sport-livescore"]
        assert table.limited((parse_subscription("ticker/1"),)) == ()
        assert table.protected_prefixes() == ("sport-livescore/private",)

    @pytest.mark.parametrize("body, message", [
        ('[namespaces."a b"]\nlog_length = 1', "namespace 'a b'"),
        ('[namespaces."a"]\nlog_length = 0', "log_length must be a number from 1"),
        ('[namespaces."a"]\nheartbeat_interval = "5"', "heartbeat_interval must be a number"),
        ('[namespaces."a"]\nmode = "patch"', "mode must be one of delta, snapshot"),
        ('[namespaces."a"]\nauth = "yes"', "auth must be true or false"),
        ('[namespaces."a"]\nlogs = 5', "unknown keys: logs"),
        ('[namespaces."a"]\nauth = true\n[namespaces."a/b"]\nauth = false',
         "sets auth = false inside a namespace"),
        ("[channels]\n", "unknown top-level keys: channels"),
        ("namespaces = 3", "namespaces must be a table"),
        ("[views", "not valid TOML"),
    ])
    def test_invalid_entries_named(self, body, message):
        with pytest.raises(ChannelConfigError, match="channels.toml") as raised:
            load(body)
        assert message in str(raised.value)

    def test_auth_false_under_protected_prefix(self):
        settings = SETTINGS.replace(subscribe_auth_prefixes=("vip",))
        with pytest.raises(ChannelConfigError, match="protects it"):
            parse('[namespaces."vip/lounge"]\nauth = false', settings)


class TestViews:
    def test_projection_keeps_nested_paths(self):
        view = make_view("score", ["/teams", "/score/home", "/missing", "/status/x"])
        document = {"teams": ["A", "B"], "score": {"home": 1, "away": 0},
                    "status": "live", "events": [1, 2]}
        assert view.project(document) == {"teams": ["A", "B"], "score": {"home": 1}}
        assert view.project([1, 2]) == {}

    def test_projection_whole_value_wins(self):
        view = make_view("v", ["/score/home", "/score"])
        assert view.project({"score": {"home": 1, "away": 2}}) == {"score": {"home": 1, "away": 2}}

    def test_projection_copies_values(self):
        view = make_view("v", ["/teams"])
        document = {"teams": [{"name": "A"}]}
        view.project(document)["teams"][0]["name"] = "changed"
        assert document == {"teams": [{"name": "A"}]}

    def test_projection_pointer_escapes(self):
        view = make_view("v", ["/a~1b", "/c~0d"])
        assert view.project({"a/b": 1, "c~d": 2, "e": 3}) == {"a/b": 1, "c~d": 2}

    @pytest.mark.parametrize("name, paths, message", [
        ("bad name", ["/a"], "view name"),
        ("v", [], "non-empty list"),
        ("v", ["a"], "must be a JSON Pointer"),
        ("v", ["/a~2"], "'~' not followed by 0 or 1"),
    ])
    def test_view_invalid_declarations(self, name, paths, message):
        with pytest.raises(ViewError, match=message):
            make_view(name, paths)


def rule(name, source, *targets):
    return make_rule({"name": name, "source": source, "targets": list(targets)}, 1)


class TestRules:
    def test_rule_routes_to_targets(self):
        rules = RuleSet((rule("a", "provider-a/match/{id}", "sport/{id}", "all/{id}/live"),))
        assert rules.route("provider-a/match/7") == [("a", "sport/7"), ("a", "all/7/live")]
        assert rules.route("provider-a/match/7/x") == []
        assert rules.route("provider-b/match/7") == []

    def test_rule_chains_followed(self):
        rules = RuleSet((rule("first", "p/{id}", "q/{id}"), rule("second", "q/{id}", "r/{id}")))
        assert rules.route("p/1") == [("first", "q/1"), ("second", "r/1")]

    def test_rule_into_own_source_loops(self):
        with pytest.raises(RuleError, match="rule 'echo' forms a loop: echo -> echo"):
            RuleSet((rule("echo", "p/{id}", "p/{id}"),))

    def test_loop_names_every_rule(self):
        rules = (
            rule("to-q", "p/{id}", "q/{id}"),
            rule("to-r", "q/{id}", "r/{id}"),
            rule("back", "r/{x}", "p/{x}"),
            rule("unrelated", "s/{id}", "t/{id}"),
        )
        with pytest.raises(RuleError, match=r"forms a loop: .*to-q -> to-r -> back -> to-q"):
            RuleSet(rules)

    def test_loop_through_placeholder(self):
        # "x/{a}" can produce "x/p", which the second rule's source matches.
        with pytest.raises(RuleError, match="forms a loop"):
            RuleSet((rule("one", "x/{a}", "y/{a}"), rule("two", "y/{a}", "x/p")))

    def test_loaded_file_rejects_loop(self):
        body = ('[[rules]]\nname = "ping"\nsource = "a/{id}"\ntargets = ["b/{id}"]\n'
                '[[rules]]\nname = "pong"\nsource = "b/{id}"\ntargets = ["a/{id}"]\n')
        with pytest.raises(ChannelConfigError, match="rule 'ping' forms a loop: ping -> pong -> ping"):
            load(body)

    @pytest.mark.parametrize("entry, message", [
        ({"name": "r", "source": "p/{id}", "targets": ["q/{other}"]}, "does not capture"),
        ({"name": "r", "source": "p/{id}", "targets": []}, "needs a list 'targets'"),
        ({"name": "r", "source": "p/*", "targets": ["q"]}, "not a valid channel template"),
        ({"name": "", "source": "p", "targets": ["q"]}, "needs a name"),
        ({"name": "r", "source": "p", "targets": ["q"], "when": 1}, "unknown keys: when"),
    ])
    def test_rule_invalid_entries(self, entry, message):
        with pytest.raises(RuleError, match=message):
            make_rule(entry, 1)

    def test_rule_names_unique(self):
        with pytest.raises(RuleError, match="repeated: r"):
            RuleSet((rule("r", "p/{id}", "q/{id}"), rule("r", "s/{id}", "t/{id}")))
