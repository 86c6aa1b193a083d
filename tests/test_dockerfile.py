"""Static checks of the Dockerfile and .dockerignore. Nothing is built.

The Dockerfile is parsed with dockerfile-parse. The .dockerignore rules are
applied the way Docker applies them: every rule is tried in order against
the path and each of its parent folders, a "!" rule re-admits, and the last
matching rule wins.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"

GATEWAY_CMD = ["gunicorn", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "app:app"]
TINI = "/usr/bin/tini"
# Debian packages that would put a compiler or headers into the image.
BUILD_PACKAGES = ("build-essential", "gcc", "g++", "make", "python3-dev", "libc6-dev", "cmake")
# A Python base image pinned to a patch release, e.g. python:3.11.17-slim-bookworm.
PINNED_BASE = re.compile(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?")


def instructions() -> list[dict]:
    return DockerfileParser(str(DOCKERFILE)).structure


def stages() -> list[list[dict]]:
    """Group the instructions by stage, each group starting with its FROM."""
    grouped: list[list[dict]] = []
    for instruction in instructions():
        if instruction["instruction"] == "FROM":
            grouped.append([])
        if grouped:
            grouped[-1].append(instruction)
    return grouped


def values(stage: list[dict], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def exec_form(value: str) -> list[str]:
    """Parse an exec-form (JSON array) ENTRYPOINT or CMD. Shell form fails the test."""
    assert value.lstrip().startswith("["), f"shell form {value!r}: use a JSON array"
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(part, str) for part in parsed)
    return parsed


def final_stage() -> list[dict]:
    return stages()[-1]


def test_multi_stage_same_pinned_base():
    bases = [values(stage, "FROM")[0].split()[0] for stage in stages()]
    assert len(bases) >= 2, "a builder stage and a runtime stage"
    assert len(set(bases)) == 1, f"the wheels must be built on the runtime base: {bases}"
    assert PINNED_BASE.fullmatch(bases[0]), f"pin a 3.11 patch release: {bases[0]}"


def test_runs_as_fixed_non_root_user():
    (user,) = values(final_stage(), "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "numeric UID, so that runAsNonRoot can check it"
    assert gid.isdigit(), "numeric GID"
    assert int(uid) != 0
    assert int(gid) != 0
    runs = " ".join(values(final_stage(), "RUN"))
    assert f"--uid {uid}" in runs
    assert f"--gid {gid}" in runs


def test_user_matches_kubernetes_manifests():
    (user,) = values(final_stage(), "USER")
    uid, _, gid = user.partition(":")
    manifest = yaml.safe_load((ROOT / "k8s/base/gateway-deployment.yaml").read_text())
    context = manifest["spec"]["template"]["spec"]["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid))


def test_tini_is_pid_one():
    (entrypoint,) = values(final_stage(), "ENTRYPOINT")
    assert exec_form(entrypoint) == [TINI, "--"]
    installs = [run for run in values(final_stage(), "RUN") if "apt-get install" in run]
    assert any(re.search(r"\btini\b", run) for run in installs), "install tini in the final stage"


def test_default_command_serves_gateway():
    (cmd,) = values(final_stage(), "CMD")
    assert exec_form(cmd) == GATEWAY_CMD
    port = GATEWAY_CMD[GATEWAY_CMD.index("--bind") + 1].rpartition(":")[2]
    assert values(final_stage(), "EXPOSE") == [port]


def test_stop_signal_and_unbuffered_output():
    assert values(final_stage(), "STOPSIGNAL") == ["SIGTERM"]
    assert "PYTHONUNBUFFERED=1" in values(final_stage(), "ENV")


def test_final_stage_has_no_build_tools():
    for run in values(final_stage(), "RUN"):
        for package in BUILD_PACKAGES:
            assert not re.search(rf"(?<![\w-]){re.escape(package)}(?![\w-])", run), (
                f"{package} in the final stage: {run}"
            )


def test_wheels_built_from_pinned_requirements():
    builder, runtime = stages()[0], final_stage()
    assert any("pip wheel" in run and "requirements.txt" in run for run in values(builder, "RUN"))
    installs = [run for run in values(runtime, "RUN") if "pip install" in run]
    assert len(installs) == 1
    install = installs[0]
    assert "--no-index" in install, "install only the builder's wheels"
    assert "from=builder" in install
    assert "--find-links" in install
    assert "requirements.txt" in install


def test_requirements_are_pinned():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^\s;]+(\s*;.*)?", requirement), (
            f"unpinned requirement: {line}"
        )


# --- .dockerignore ----------------------------------------------------------


def ignore_rules() -> list[tuple[bool, re.Pattern]]:
    """(exception, pattern) per rule of .dockerignore, in order."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((exception, re.compile(glob_to_regex(pattern))))
    return rules


def glob_to_regex(pattern: str) -> str:
    parts = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return "".join(parts)


def excluded(path: str) -> bool:
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for exception, pattern in ignore_rules():
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            result = not exception
    return result


def top_level_packages() -> list[str]:
    return sorted(
        p.name for p in ROOT.iterdir()
        if (p / "__init__.py").is_file() and p.name not in ("tests", "bench")
    )


@pytest.mark.parametrize(
    "path",
    [".git/config", ".venv/bin/python", "tests/test_k8s_manifests.py", ".pytest_cache/README.md",
     ".hypothesis/examples/x", "livegate/__pycache__/settings.cpython-311.pyc", "k8s/base/x.yaml",
     "Dockerfile"],
)
def test_dockerignore_excludes(path):
    assert excluded(path)


def test_dockerignore_admits_application():
    paths = ["app.py", "gunicorn.conf.py", "requirements.txt", "ingest/publish.lua",
             "livegate/alias.lua",
             "static/index.html"]
    paths += [f"{package}/__init__.py" for package in top_level_packages()]
    for path in paths:
        assert not excluded(path), f"{path} is missing from the image"
