"""Source leases in a private Redis: one holder, renewal, release, expiry, takeover."""

from __future__ import annotations

import time

import pytest

from ingest.lease import Lease, lease_key
from ingest.store import IngestStore, LockTimeout

pytestmark = pytest.mark.integration


def make(redis_server, token: str, ttl: float = 1.0, clock=time.monotonic) -> Lease:
    return Lease(redis_server.client(), "lt", "src", ttl, token=token, clock=clock)


def test_only_one_replica_holds_lease(redis_server):
    first, second = make(redis_server, "a"), make(redis_server, "b")
    assert first.try_acquire()
    assert not second.try_acquire()
    assert first.valid()
    assert not second.valid()
    assert redis_server.client().get(lease_key("lt", "src")) == b"a"


def test_renew_extends_only_own_lease(redis_server):
    first, second = make(redis_server, "a", ttl=0.5), make(redis_server, "b", ttl=0.5)
    assert first.try_acquire()
    for _ in range(4):
        time.sleep(0.2)
        assert first.renew()
    assert not second.try_acquire()
    assert not second.renew()


def test_release_lets_other_take_over(redis_server):
    first, second = make(redis_server, "a", ttl=30), make(redis_server, "b", ttl=30)
    first.try_acquire()
    first.release()
    assert not first.held
    assert second.try_acquire()


def test_release_does_not_delete_other_holders_key(redis_server):
    first, second = make(redis_server, "a", ttl=0.2), make(redis_server, "b", ttl=30)
    first.try_acquire()
    time.sleep(0.3)
    assert second.try_acquire()
    first.release()
    assert redis_server.client().get(lease_key("lt", "src")) == b"b"


def test_expired_lease_is_taken_over_and_renewal_fails(redis_server):
    first, second = make(redis_server, "a", ttl=0.3), make(redis_server, "b", ttl=0.3)
    assert first.try_acquire()
    assert second.time_until_free() == pytest.approx(0.3, abs=0.1)
    time.sleep(0.35)
    assert second.time_until_free() == 0.0
    assert second.try_acquire()
    assert not first.renew()
    assert not first.valid()


def test_holder_stops_before_key_expires(redis_server):
    now = [100.0]
    lease = make(redis_server, "a", ttl=10, clock=lambda: now[0])
    lease.try_acquire()
    now[0] = 108.9  # the margin is a tenth of the TTL, at most 1 s
    assert lease.valid()
    now[0] = 109.0
    assert not lease.valid()


def test_store_lock_excludes_second_holder(redis_server):
    store = IngestStore(redis_server.client(), "lt")
    with store.lock("match:1"):
        with pytest.raises(LockTimeout):
            with store.lock("match:1", wait=0.1):
                pass
    with store.lock("match:1", wait=0.1):
        pass
