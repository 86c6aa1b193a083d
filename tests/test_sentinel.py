"""Redis Sentinel and lost writes: clients stay consistent across a failover.

Real processes throughout: a primary, a replica and one sentinel (quorum
1) from the same redis-server binary, a gateway under gunicorn that finds
Redis only through the sentinel, and SSE clients.

A failover promotes a replica that may lack the old primary's last writes
(replication is asynchronous), so Redis's ``seq`` can go back and the
next publishes reuse seqs that clients already hold with other content.
The gateway's subscriber must notice that and give its clients fresh
snapshots under a new epoch; these tests check what the clients hold.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
import redis

from ingest.publisher import Publisher, PublishError
from livegate.ids import parse_event_id
from livegate.redis_client import BlockingSentinelConnectionPool, connect, request_primary_check
from livegate.settings import Settings
from tests.support.mirror import Mirror
from tests.support.ports import free_port
from tests.support.redis_server import HOST, RedisServer
from tests.support.sentinel import SentinelServer
from tests.support.sse import SSEClient
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SERVICE = "livegate-test"
# A long constant field keeps each patch smaller than its document, so that
# changes travel as deltas rather than as snapshots.
TEAM = "a constant team name that keeps patches smaller than documents"


def replication_field(server: RedisServer, name: str) -> str:
    with server.client(socket_timeout=2) as connection:
        return str(connection.info("replication").get(name))


@pytest.fixture
def sentinel_setup(tmp_path, request):
    """A primary, one replica in sync with it, and a sentinel that monitors both."""
    # By default (repl-diskless-sync-delay) Redis 7 waits 5 s before a diskless first sync.
    primary = RedisServer(data_dir=tmp_path / "primary",
                          extra_args=["--repl-diskless-sync-delay", "0"]).start()
    replica = RedisServer(
        data_dir=tmp_path / "replica", extra_args=["--replicaof", HOST, str(primary.port)]
    )
    sentinel = SentinelServer(primary.port, service=SERVICE, data_dir=tmp_path / "sentinel")
    try:
        replica.start()
        wait_for(lambda: replication_field(replica, "master_link_status") == "up", timeout=10,
                 message="the replica to finish its first sync")
        # Started after the sync, so the sentinel's first INFO of the primary
        # already lists the replica. Otherwise it finds the replica only 10 s later.
        sentinel.start()
        wait_for(lambda: replica.port in sentinel.promotable_replica_ports(), timeout=15,
                 message="the sentinel to find the replica ready for promotion")
        yield primary, replica, sentinel
    finally:
        failed = any(getattr(getattr(request.node, f"report_{phase}", None), "failed", False)
                     for phase in ("setup", "call"))
        if failed:
            print(f"\n{sentinel.log_tail(40)}")
        sentinel.close()
        replica.close()
        primary.close()


def sentinel_env(sentinel: SentinelServer, prefix: str) -> dict[str, str]:
    return {
        "LIVEGATE_REDIS_SENTINELS": sentinel.address,
        "LIVEGATE_REDIS_SENTINEL_SERVICE": SERVICE,
        "LIVEGATE_KEY_PREFIX": prefix,
        "LIVEGATE_PROBE_INTERVAL": "0.5",
        "LIVEGATE_PROBE_TIMEOUT": "1",
        "LIVEGATE_HEARTBEAT_INTERVAL": "1",
        "LIVEGATE_SHUTDOWN_WINDOW": "0.5",
    }


def unreachable_url() -> str:
    """A REDIS_URL where nothing listens: with sentinels set, only they can lead to Redis."""
    return f"redis://{HOST}:{free_port()}/0"


def stream(gateway, *channels: str) -> SSEClient:
    client = SSEClient(f"{gateway.url}/v1/stream", params=[("channel", c) for c in channels])
    client.start()
    assert client.status_code == 200, client.body
    return client


def wait_for_documents(client: SSEClient, expected: dict, timeout: float = 20) -> Mirror:
    """Wait until the client's mirror contains exactly ``expected``.

    Raises AssertionError listing the channels that differ after ``timeout`` seconds.
    """

    def caught_up(events):
        mirror = Mirror()
        mirror.apply_events(events)
        return mirror.documents() == expected and mirror

    try:
        return client.wait_for(caught_up, timeout=timeout)
    except TimeoutError:
        mirror = Mirror()
        mirror.apply_events(client.events)
        got = mirror.documents()
        differences = {c: (got.get(c), expected.get(c)) for c in set(got) | set(expected)
                       if got.get(c) != expected.get(c)}
        last = [(event.event, event.id, event.data[:80]) for event in client.events[-5:]]
        raise AssertionError(f"{len(differences)} channels differ: {differences}; "
                             f"last events: {last}"[:4000]) from None


def assert_versions_consecutive(mirror: Mirror) -> None:
    """Within each run (a snapshot and the deltas after it) versions go up by one."""
    for channel, state in mirror.channels.items():
        for run in state.runs:
            assert run == list(range(run[0], run[0] + len(run))), (channel, run)


class PublishLoop(threading.Thread):
    """Publishes changing documents until stopped, through errors, at most for ``limit`` s."""

    def __init__(self, publisher: Publisher, channels: list[str], limit: float = 60.0):
        super().__init__(name="publish-loop", daemon=True)
        self.publisher = publisher
        self.channels = channels
        self.limit = limit
        self.stopping = threading.Event()
        self.counter = 0
        # (monotonic time, seq, epoch) of every acknowledged publish.
        self.acknowledged: list[tuple[float, int, str]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        rng = random.Random(11)
        deadline = time.monotonic() + self.limit
        while not self.stopping.is_set() and time.monotonic() < deadline:
            channel = rng.choice(self.channels)
            self.counter += 1
            document = {"channel": channel, "team": TEAM, "n": self.counter,
                        "score": [rng.randint(0, 5), 0]}
            try:
                result = self.publisher.publish(channel, document)
            except (redis.RedisError, PublishError) as error:
                self.errors.append(repr(error))
                self.stopping.wait(0.05)
                continue
            token = parse_event_id(result.id)
            self.acknowledged.append((time.monotonic(), token.seq, token.epoch))
            self.stopping.wait(0.02)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the publish loop did not stop"


def publish_with_retries(publisher: Publisher, channel: str, document: dict) -> None:
    for _ in range(50):
        try:
            publisher.publish(channel, document)
            return
        except redis.RedisError:
            time.sleep(0.1)
    raise AssertionError(f"publishing to {channel} kept failing for 5 s")


def test_streams_survive_sentinel_failover(sentinel_setup, gateway_factory):
    primary, replica, sentinel = sentinel_setup
    env = sentinel_env(sentinel, "sf")
    url = unreachable_url()
    gateway = gateway_factory(url, workers=2, env=env)
    settings = Settings.from_env({"REDIS_URL": url, **env})
    publisher = Publisher.from_settings(settings)
    channels = [f"sf/m{i}" for i in range(8)]
    for channel in channels:
        publisher.publish(channel, {"channel": channel, "team": TEAM, "n": 0, "score": [0, 0]})
    first = publisher.publish(channels[0], {"channel": channels[0], "team": TEAM, "n": 0})
    first_epoch = parse_event_id(first.id).epoch

    subscriptions = [("sf/*",), ("sf/*",), ("sf/*",), tuple(channels[:3]), tuple(channels[4:])]
    clients = [stream(gateway, *subscribed) for subscribed in subscriptions]
    loop = PublishLoop(publisher, channels)
    try:
        for client, subscribed in zip(clients, subscriptions):
            client.wait_for_count(8 if subscribed == ("sf/*",) else len(subscribed))
        loop.start()
        wait_for(lambda: len(loop.acknowledged) >= 30, timeout=10, message="30 publishes")

        # Phase: the failover, while the loop keeps publishing.
        sentinel.failover()
        wait_for(lambda: sentinel.primary_address() == (HOST, replica.port), timeout=15,
                 message="the sentinel to name the replica as primary")
        assert replication_field(replica, "role") == "master"

        # Phase: publishing resumes on the new primary.
        with replica.client(socket_timeout=2) as new_primary:
            seq_at_switch = int(new_primary.get("sf:seq"))
            wait_for(lambda: int(new_primary.get("sf:seq")) >= seq_at_switch + 30, timeout=15,
                     message="30 publishes on the new primary")
        loop.stop()
        assert publisher._client.connection_pool.master_address == (HOST, replica.port)

        # Phase: one final document per channel. Writes that the old primary
        # acknowledged after the promotion are gone from Redis, and a publisher
        # (like ingest) heals them by publishing the whole document again.
        final = {channel: {"channel": channel, "team": TEAM, "final": True}
                 for channel in channels}
        for channel, document in final.items():
            publish_with_retries(publisher, channel, document)
        for channel, document in final.items():
            assert publisher.current(channel)[1] == document

        for client, subscribed in zip(clients, subscriptions):
            expected = {c: final[c] for c in channels if c in subscribed or subscribed == ("sf/*",)}
            mirror = wait_for_documents(client, expected)
            assert mirror.deltas > 0
            assert_versions_consecutive(mirror)
    finally:
        loop.stopping.set()
        for client in clients:
            client.close()

    gateway.wait_for_log("redis connection restored", timeout=5)
    # A seq that went back shows writes the failover lost: the gateway must
    # then have started a new epoch, which voids the ids of the lost writes.
    seqs = [seq for _, seq, _ in loop.acknowledged]
    went_back = any(later <= earlier for earlier, later in zip(seqs, seqs[1:]))
    print(f"\nfailover: {len(loop.acknowledged)} publishes acknowledged, seq went back: "
          f"{went_back}, publish errors: {len(loop.errors)}")
    if went_back:
        gateway.wait_for_log("Redis lost updates", timeout=5)
        with replica.client(socket_timeout=2) as new_primary:
            assert new_primary.get("sf:epoch").decode() != first_epoch


def test_restart_from_older_dump_starts_new_epoch(redis_server, gateway_factory):
    """Redis back at an older seq with the same epoch: clients get snapshots, not stale deltas."""
    gateway = gateway_factory(redis_server.url, workers=1,
                              env={"LIVEGATE_KEY_PREFIX": "rb", "LIVEGATE_HEARTBEAT_INTERVAL": "1",
                                   "LIVEGATE_SHUTDOWN_WINDOW": "0.5"})
    publisher = Publisher(redis_server.client(), key_prefix="rb")
    channels = ["rb/a", "rb/b", "rb/c"]
    for channel in channels:
        publisher.publish(channel, {"channel": channel, "round": 0})
    client = stream(gateway, "rb/*")
    client.wait_for_count(3)
    redis_server.save()
    with redis_server.client() as connection:
        saved_seq = int(connection.get("rb:seq"))
        old_epoch = connection.get("rb:epoch").decode()

    # Phase: updates that the restart will lose, seen by the client.
    for round_number in range(1, 6):
        for channel in channels:
            publisher.publish(channel, {"channel": channel, "round": round_number})
    lost = {channel: {"channel": channel, "round": 5} for channel in channels}
    wait_for_documents(client, lost, timeout=10)
    resume_id = client.last_event_id

    # Phase: a crash and a restart from the older dump, which contains the
    # old epoch. The gateway may replace that epoch as soon as it reconnects.
    redis_server.kill()
    redis_server.start()
    with redis_server.client() as connection:
        assert int(connection.get("rb:seq")) == saved_seq

    # Phase: new updates reuse the lost seqs with other content.
    final = {channel: {"channel": channel, "round": "after restart"} for channel in channels}
    for channel, document in final.items():
        publish_with_retries(publisher, channel, document)
    try:
        mirror = wait_for_documents(client, final, timeout=15)
        assert_versions_consecutive(mirror)
        gateway.wait_for_log("Redis lost updates", timeout=5)
        with redis_server.client() as connection:
            assert connection.get("rb:epoch").decode() != old_epoch

        # A client that resumes from an id of a lost update gets snapshots.
        resumed = SSEClient(f"{gateway.url}/v1/stream", params=[("channel", "rb/*")],
                            last_event_id=resume_id)
        resumed.start()
        try:
            resumed_mirror = wait_for_documents(resumed, final, timeout=10)
            assert resumed_mirror.snapshots == 3
            assert resumed_mirror.deltas == 0
        finally:
            resumed.close()
    finally:
        client.close()


def test_restart_without_loss_keeps_epoch(redis_server, gateway_factory):
    """A reconnect to a Redis that kept every update is no rollback: deltas go on."""
    gateway = gateway_factory(redis_server.url, workers=1,
                              env={"LIVEGATE_KEY_PREFIX": "kp", "LIVEGATE_HEARTBEAT_INTERVAL": "1",
                                   "LIVEGATE_SHUTDOWN_WINDOW": "0.5"})
    publisher = Publisher(redis_server.client(), key_prefix="kp")
    channels = ["kp/a", "kp/b"]
    # The long constant field keeps each patch smaller than its document,
    # so that changes travel as deltas.
    team = "a constant team name that keeps patches small"
    for channel in channels:
        publisher.publish(channel, {"channel": channel, "team": team, "round": 0})
    client = stream(gateway, "kp/*")
    try:
        client.wait_for_count(2)
        for channel in channels:
            publisher.publish(channel, {"channel": channel, "team": team, "round": 1})
        expected = {c: {"channel": c, "team": team, "round": 1} for c in channels}
        wait_for_documents(client, expected, timeout=10)
        with redis_server.client() as connection:
            epoch = connection.get("kp:epoch").decode()

        # SAVE, then a restart that loads every update back.
        redis_server.restart(keep_data=True)
        gateway.wait_for_log("redis connection restored", timeout=10)
        final = {channel: {"channel": channel, "team": team, "round": 2} for channel in channels}
        for channel, document in final.items():
            publish_with_retries(publisher, channel, document)

        mirror = wait_for_documents(client, final, timeout=10)
        assert mirror.snapshots == 2
        assert mirror.deltas == 4
        assert_versions_consecutive(mirror)
        with redis_server.client() as connection:
            assert connection.get("kp:epoch").decode() == epoch
        assert "Redis lost updates" not in gateway.log_text()
    finally:
        client.close()


def test_blocking_sentinel_pool_waits_for_a_connection(sentinel_setup):
    primary, _, sentinel = sentinel_setup
    settings = Settings.from_env({
        "REDIS_URL": unreachable_url(),
        "LIVEGATE_REDIS_SENTINELS": sentinel.address,
        "LIVEGATE_REDIS_SENTINEL_SERVICE": SERVICE,
    })

    def hold_connections(client: redis.Redis, count: int) -> tuple[list[str], float]:
        """Run ``count`` BLPOP calls of 0.3 s at once; return the errors and the duration."""
        errors: list[str] = []

        def hold(index: int) -> None:
            try:
                client.blpop([f"pool-test/{index}"], timeout=0.3)
            except redis.ConnectionError as error:
                errors.append(str(error))

        threads = [threading.Thread(target=hold, args=(index,)) for index in range(count)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        return errors, time.monotonic() - started

    blocking = connect(settings, max_connections=2, pool_timeout=5)
    try:
        assert isinstance(blocking.connection_pool, BlockingSentinelConnectionPool)
        errors, duration = hold_connections(blocking, 6)
        assert errors == []
        # Six calls of 0.3 s on two connections take three rounds.
        assert duration >= 0.85
        assert blocking.connection_pool.master_address == (HOST, primary.port)
    finally:
        blocking.close()

    impatient = connect(settings, max_connections=2, pool_timeout=0.1)
    try:
        errors, _ = hold_connections(impatient, 6)
        assert errors and all("No connection available" in error for error in errors)
    finally:
        impatient.close()

    failing = connect(settings, max_connections=2, blocking=False)
    try:
        errors, _ = hold_connections(failing, 6)
        assert errors and all("Too many connections" in error for error in errors)
    finally:
        failing.close()


def test_requested_check_moves_every_caller(sentinel_setup):
    """After request_primary_check no caller reads from the old primary, still serving reads."""
    primary, replica, sentinel = sentinel_setup
    settings = Settings.from_env({
        "REDIS_URL": unreachable_url(),
        "LIVEGATE_REDIS_SENTINELS": sentinel.address,
        "LIVEGATE_REDIS_SENTINEL_SERVICE": SERVICE,
    })
    client = connect(settings, max_connections=16)

    def ports_seen(count: int) -> list[int]:
        """Ask ``count`` threads at once which server their connection reaches."""
        barrier = threading.Barrier(count)
        ports: list[int] = []

        def read_port() -> None:
            barrier.wait(timeout=5)
            ports.append(int(client.info("server")["tcp_port"]))

        threads = [threading.Thread(target=read_port) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        return ports

    try:
        assert ports_seen(6) == [primary.port] * 6
        sentinel.failover()
        wait_for(lambda: client.connection_pool.sentinel_manager.discover_master(SERVICE)
                 == (HOST, replica.port), timeout=15,
                 message="the sentinel to report the replica as primary")
        # The old primary is not demoted yet, so old connections still work.
        assert replication_field(primary, "role") == "master"

        request_primary_check(client)
        assert ports_seen(6) == [replica.port] * 6
    finally:
        client.close()


def test_close_releases_sentinel_connections(sentinel_setup):
    _, _, sentinel = sentinel_setup
    settings = Settings.from_env({
        "REDIS_URL": unreachable_url(),
        "LIVEGATE_REDIS_SENTINELS": sentinel.address,
        "LIVEGATE_REDIS_SENTINEL_SERVICE": SERVICE,
    })

    def sentinel_clients() -> int:
        with sentinel.client() as connection:
            return len(connection.client_list())

    baseline = sentinel_clients()
    clients = [connect(settings) for _ in range(5)]
    for client in clients:
        assert client.ping()
    assert sentinel_clients() >= baseline + 5
    for client in clients:
        client.close()
    wait_for(lambda: sentinel_clients() <= baseline, timeout=5,
             message="the sentinel connections to close")
