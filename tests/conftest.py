"""Shared fixtures: private redis-server processes and gateways under gunicorn.

A missing redis-server binary makes the fixtures fail with install instructions rather
than skip, so CI cannot pass without running the integration tests.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

import pytest

from tests.support.gateway import Gateway
from tests.support.redis_server import RedisServer


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    # Keep each phase's report on the item, so fixture teardown can tell whether the
    # test failed and print the logs of the processes it started.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _test_failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"report_{phase}", None), "failed", False)
        for phase in ("setup", "call")
    )


@pytest.fixture
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server started for this test alone and stopped after it."""
    server = RedisServer(data_dir=tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        if _test_failed(request):
            print(f"\n{server!r}\n{server.log_tail()}")
        server.close()


@pytest.fixture(scope="module")
def redis_server_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server shared by the tests of one module. Tests must not rely on an empty
    database, nor stop the server without starting it again."""
    server = RedisServer(data_dir=tmp_path_factory.mktemp("redis-module"))
    server.start()
    try:
        yield server
    finally:
        server.close()


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def gateway_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayFactory]:
    """A function make(redis_url, workers=2, env=None, **options) -> Gateway that starts
    a gateway. `options` go to Gateway, for example port= to reuse a stopped gateway's port.

    Every gateway made is stopped at teardown, and every process it started is killed
    if still alive, even when a stop fails.
    """
    gateways: list[Gateway] = []

    def make(
        redis_url: str,
        workers: int = 2,
        env: Optional[Mapping[str, object]] = None,
        **options: Any,
    ) -> Gateway:
        options.setdefault("log_dir", tmp_path / "gateways")
        gateway = Gateway(redis_url, workers=workers, env=env, **options)
        gateways.append(gateway)
        return gateway.start()

    yield make

    if _test_failed(request):
        for gateway in gateways:
            print(f"\n{gateway!r}\n{gateway.log_tail(80)}")

    # ExitStack runs every callback even if one raises, and re-raises the last error
    # with the earlier ones chained. Callbacks run in reverse order of registration, so
    # each gateway's cleanup() runs after its stop().
    with contextlib.ExitStack() as teardown:
        for gateway in gateways:
            teardown.callback(gateway.cleanup)
            teardown.callback(gateway.stop)
