"""Services the routes share, stored in ``app.extensions["livegate"]``."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from ingest.publisher import Publisher
from livegate.auth import PublishAuth, SubscribeAuth
from livegate.redis_client import connect
from livegate.settings import Settings
from livegate.wire import Keys
from workers.offload import run_in_thread


@dataclass
class Gateway:
    settings: Settings
    redis: redis.Redis
    publisher: Publisher
    keys: Keys
    # None when no publish token is configured: publishing is open.
    publish_auth: PublishAuth | None = None
    # None when no channel needs a subscriber token.
    subscribe_auth: SubscribeAuth | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Gateway":
        client = connect(
            settings, max_connections=32, pool_timeout=10, socket_timeout=10,
            socket_connect_timeout=5,
        )
        publisher = Publisher.from_settings(settings, client, cpu_runner=run_in_thread)
        publish_auth = PublishAuth(settings.publish_tokens) if settings.publish_tokens else None
        return cls(settings, client, publisher, Keys(settings.key_prefix),
                   publish_auth, SubscribeAuth.from_settings(settings))


def gateway() -> Gateway:
    return current_app.extensions["livegate"]
