"""Services the routes share, stored in ``app.extensions["livegate"]``."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from ingest.publisher import Publisher
from livegate.settings import Settings
from livegate.wire import Keys
from workers.offload import run_in_thread


@dataclass
class Gateway:
    settings: Settings
    redis: redis.Redis
    publisher: Publisher
    keys: Keys

    @classmethod
    def from_settings(cls, settings: Settings) -> "Gateway":
        client = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                settings.redis_url, max_connections=32, timeout=10,
                socket_timeout=10, socket_connect_timeout=5,
            )
        )
        publisher = Publisher.from_settings(settings, client, cpu_runner=run_in_thread)
        return cls(settings, client, publisher, Keys(settings.key_prefix))


def gateway() -> Gateway:
    return current_app.extensions["livegate"]
