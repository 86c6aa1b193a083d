"""Services the routes share, stored in ``app.extensions["livegate"]``."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from ingest.publisher import Publisher
from livegate.aliases import AliasStore
from livegate.auth import PublishAuth, SubscribeAuth
from livegate.channel_config import ChannelConfig
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
    channel_config: ChannelConfig
    aliases: AliasStore
    # None when no publish token is configured: publishing is open.
    publish_auth: PublishAuth | None = None
    # None when no channel needs a subscriber token.
    subscribe_auth: SubscribeAuth | None = None
    # None when no admin token is configured: the admin endpoints refuse everyone.
    admin_auth: PublishAuth | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Gateway":
        client = connect(
            settings, max_connections=32, pool_timeout=10, socket_timeout=10,
            socket_connect_timeout=5,
        )
        channel_config = ChannelConfig.from_settings(settings)
        publisher = Publisher(
            client, key_prefix=settings.key_prefix,
            channel_log_length=settings.channel_log_length,
            global_log_length=settings.global_log_length, cpu_runner=run_in_thread,
            max_depth=settings.max_document_depth, channel_config=channel_config,
        )
        publish_auth = PublishAuth(settings.publish_tokens) if settings.publish_tokens else None
        admin_auth = None
        if settings.admin_tokens:
            admin_auth = PublishAuth(settings.admin_tokens, "changing aliases", "admin")
        keys = Keys(settings.key_prefix)
        subscribe_auth = SubscribeAuth.from_settings(
            settings, channel_config.namespaces.protected_prefixes()
        )
        return cls(settings, client, publisher, keys, channel_config,
                   AliasStore(client, keys, settings.global_log_length),
                   publish_auth, subscribe_auth, admin_auth)


def gateway() -> Gateway:
    return current_app.extensions["livegate"]
