"""Publish tokens and subscriber JWTs: who may publish to or read which channel.

Pure logic without Flask or sockets, so that it can be tested alone. The
routes take the token from the request and turn the errors raised here
into 401 and 403 responses.

Publishing: ``LIVEGATE_PUBLISH_TOKENS`` lists bearer tokens, each for every
channel or for some channel prefixes. A presented token is compared with
every configured one in constant time.

Subscribing: ``LIVEGATE_SUBSCRIBE_AUTH_PREFIXES`` names the protected
channels. A stream that touches them needs a JWT whose ``channels`` claim
lists channel names and patterns (subscription syntax). The stream's
``ChannelAccess`` then decides, channel by channel, what it may receive.

A prefix covers a channel when the channel equals it or continues it with
``/``: the prefix ``news`` covers ``news`` and ``news/uk`` but not
``newsroom``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from livegate.channels import ChannelPrefixes, InvalidChannelError, Pattern, parse_subscription
from livegate.settings import ALL_CHANNELS, SettingError, Settings

# The JWT claim that lists the channels and patterns a subscriber may read.
CHANNELS_CLAIM = "channels"
# A token listing more grants than this is rejected; it bounds the work of
# matching one channel against a token.
MAX_GRANTS = 1000
# Channels whose decision a ChannelAccess remembers before it starts over.
MAX_CACHED_DECISIONS = 10_000
# Minimum RSA key size accepted for RS256 (NIST SP 800-131A).
MIN_RSA_KEY_BITS = 2048


class AccessError(Exception):
    """A request that may not proceed; ``status`` is its HTTP status."""

    status = 403
    code = "forbidden"

    def __init__(self, message: str, **fields: object):
        super().__init__(message)
        self.message = message
        self.fields = fields


class AuthenticationError(AccessError):
    """No token, or a token that is unknown, invalid or expired: HTTP 401.

    ``token_presented`` decides whether the route adds ``error="invalid_token"``
    to ``WWW-Authenticate`` (RFC 6750 section 3.1).
    """

    status = 401
    code = "unauthorized"

    def __init__(self, message: str, token_presented: bool, **fields: object):
        super().__init__(message, **fields)
        self.token_presented = token_presented


class AuthorizationError(AccessError):
    """A valid token that does not grant the channel asked for: HTTP 403."""

    status = 403
    code = "forbidden"


def token_fingerprint(token: str) -> str:
    """Return the first 12 hex digits of the token's SHA-256, for logs in place of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:12]


# -- publishing -------------------------------------------------------------


@dataclass(frozen=True)
class PublishGrant:
    """The channels one accepted publish token may publish to."""

    fingerprint: str
    prefixes: ChannelPrefixes | None

    def allows(self, channel: str) -> bool:
        return self.prefixes is None or self.prefixes.covers(channel)


class PublishAuth:
    """The configured publish tokens. Only SHA-256 digests are kept in memory."""

    def __init__(self, tokens: Iterable[tuple[str, tuple[str, ...]]],
                 action: str = "publishing", kind: str = "publish"):
        """``action`` and ``kind`` name what the tokens are for in messages:
        "changing aliases" and "admin" for the admin tokens."""
        self._action = action
        self._kind = kind
        self._entries = [
            (
                hashlib.sha256(token.encode("utf-8")).digest(),
                PublishGrant(token_fingerprint(token),
                             ChannelPrefixes(prefixes) if prefixes else None),
            )
            for token, prefixes in tokens
        ]

    def authenticate(self, token: str | None) -> PublishGrant:
        """Return the grant of ``token``; raise AuthenticationError when it is missing or unknown.

        The presented token is hashed and compared with every configured
        digest, also after a match, so the time taken does not tell which
        token matched or how many characters were right.
        """
        if not token:
            raise AuthenticationError(
                f"{self._action} needs an Authorization: Bearer <token> header",
                token_presented=False,
            )
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: PublishGrant | None = None
        for configured, grant in self._entries:
            if hmac.compare_digest(digest, configured) and found is None:
                found = grant
        if found is None:
            raise AuthenticationError(f"the {self._kind} token is not valid",
                                      token_presented=True)
        return found

    @staticmethod
    def authorize(grant: PublishGrant, channel: str) -> None:
        """Raise AuthorizationError unless ``grant`` may publish to ``channel``."""
        if not grant.allows(channel):
            raise AuthorizationError(
                f"this publish token may not publish to {channel!r}", channel=channel,
            )


# -- subscribing ------------------------------------------------------------


class ChannelAccess:
    """The channels one stream may receive: every open channel, and the
    protected ones its token grants. Decisions are cached per channel.

    Touched only by the greenlets of one worker, and never yields.
    """

    __slots__ = ("_protected", "_grants", "_decisions")

    def __init__(self, protected: ChannelPrefixes, grants: tuple[Pattern, ...]):
        self._protected = protected
        self._grants = grants
        self._decisions: dict[str, bool] = {}

    def permits(self, channel: str) -> bool:
        decision = self._decisions.get(channel)
        if decision is None:
            decision = not self._protected.covers(channel) or any(
                grant.matches(channel) for grant in self._grants
            )
            if len(self._decisions) >= MAX_CACHED_DECISIONS:
                self._decisions.clear()
            self._decisions[channel] = decision
        return decision


@dataclass(frozen=True)
class StreamAccess:
    """The outcome of authorizing a stream that touches protected channels.

    ``expires_at`` is Unix time: the token's ``exp`` plus the leeway, or
    None for a stream without a token, which only ever receives open channels.
    """

    channels: ChannelAccess
    expires_at: float | None
    fingerprint: str | None


class JwtVerifier:
    """Verifier of subscriber JWTs with one fixed algorithm and key, never the token's ``alg``."""

    def __init__(self, algorithm: str, key: Any, audience: str | None, issuer: str | None,
                 leeway: float):
        self.algorithm = algorithm
        self._key = key
        self._audience = audience
        self._issuer = issuer
        self.leeway = leeway

    @classmethod
    def from_settings(cls, settings: Settings) -> "JwtVerifier":
        """Build the verifier; raises SettingError when the key settings do not fit together."""
        algorithm = settings.subscribe_jwt_algorithm
        public_key_text = settings.subscribe_jwt_public_key
        public_key_file = settings.subscribe_jwt_public_key_file
        if algorithm == "HS256":
            if public_key_text or public_key_file:
                raise SettingError(
                    "LIVEGATE_SUBSCRIBE_JWT_PUBLIC_KEY(_FILE) is set but "
                    "LIVEGATE_SUBSCRIBE_JWT_ALGORITHM is HS256; set it to RS256 or remove the key"
                )
            if not settings.subscribe_jwt_secret:
                raise SettingError(
                    "LIVEGATE_SUBSCRIBE_AUTH_PREFIXES is set but LIVEGATE_SUBSCRIBE_JWT_SECRET "
                    "is empty; set a secret of at least 32 bytes, or use RS256 with a public key"
                )
            key: Any = settings.subscribe_jwt_secret.encode("utf-8")
        else:
            if settings.subscribe_jwt_secret:
                raise SettingError(
                    "LIVEGATE_SUBSCRIBE_JWT_SECRET is set but LIVEGATE_SUBSCRIBE_JWT_ALGORITHM is "
                    "RS256; remove the secret or use HS256"
                )
            key = _load_public_key(public_key_text, public_key_file)
        return cls(algorithm, key, settings.subscribe_jwt_audience or None,
                   settings.subscribe_jwt_issuer or None, settings.subscribe_jwt_leeway)

    def verify(self, token: str) -> dict[str, Any]:
        """Return the token's claims; raise AuthenticationError naming what is wrong."""
        # Imported on first use, in a worker: PyJWT's jwks_client imports ssl,
        # and the gunicorn master must not import ssl before gevent patches
        # it in the workers it forks.
        import jwt

        try:
            return jwt.decode(
                token, self._key, algorithms=[self.algorithm], audience=self._audience,
                issuer=self._issuer, leeway=self.leeway,
                options={"require": ["exp"], "enforce_minimum_key_length": True},
            )
        except jwt.ExpiredSignatureError:
            reason = "the token has expired"
        except jwt.ImmatureSignatureError:
            reason = "the token is not valid yet (nbf)"
        except jwt.InvalidAudienceError:
            reason = "the token's aud claim is missing or wrong"
        except jwt.InvalidIssuerError:
            reason = "the token's iss claim is missing or wrong"
        except jwt.MissingRequiredClaimError as error:
            reason = f"the token has no {error.claim} claim"
        except jwt.InvalidTokenError:
            # Bad format, bad signature, another algorithm: one message for all,
            # so that probing learns nothing.
            reason = "the token is not valid"
        raise AuthenticationError(reason, token_presented=True)


def _load_public_key(text: str, path: str):
    if text and path:
        raise SettingError("set LIVEGATE_SUBSCRIBE_JWT_PUBLIC_KEY or "
                           "LIVEGATE_SUBSCRIBE_JWT_PUBLIC_KEY_FILE, not both")
    if not text and not path:
        raise SettingError("RS256 needs LIVEGATE_SUBSCRIBE_JWT_PUBLIC_KEY or "
                           "LIVEGATE_SUBSCRIBE_JWT_PUBLIC_KEY_FILE")
    source = "LIVEGATE_SUBSCRIBE_JWT_PUBLIC_KEY"
    if path:
        source = f"LIVEGATE_SUBSCRIBE_JWT_PUBLIC_KEY_FILE={path!r}"
        try:
            pem = Path(path).read_bytes()
        except OSError as error:
            raise SettingError(f"cannot read {source}: {error.strerror}") from None
    else:
        pem = text.encode("ascii", "replace")
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError) as error:
        raise SettingError(f"{source} is not a PEM public key: {error}") from None
    if not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_KEY_BITS:
        raise SettingError(f"{source} must be an RSA public key of at least "
                           f"{MIN_RSA_KEY_BITS} bits")
    return key


class SubscribeAuth:
    """The protected channel prefixes and the verifier of subscriber JWTs."""

    def __init__(self, protected: ChannelPrefixes, verifier: JwtVerifier):
        self.protected = protected
        self.verifier = verifier

    @classmethod
    def from_settings(
        cls, settings: Settings, namespace_prefixes: tuple[str, ...] = ()
    ) -> "SubscribeAuth | None":
        """Build the policy, or return None when no channel is protected.

        ``namespace_prefixes`` are the prefixes of the namespaces that set
        ``auth = true``; they are protected as well. Raises SettingError for
        a missing or unusable key.
        """
        prefixes = tuple(settings.subscribe_auth_prefixes)
        if ALL_CHANNELS not in prefixes:
            prefixes += tuple(p for p in namespace_prefixes if p not in prefixes)
        if not prefixes:
            return None
        return cls(ChannelPrefixes(prefixes), JwtVerifier.from_settings(settings))

    def authorize(
        self, subscriptions: tuple[Pattern, ...], token: str | None
    ) -> StreamAccess | None:
        """Decide whether a stream may open, and what it may receive.

        Returns None for a stream that cannot touch a protected channel:
        it needs no token and no filter, and a token it carries is ignored.
        Raises AuthenticationError (no token for an exact protected channel
        or a pattern entirely inside protected prefixes, or an invalid
        token) and AuthorizationError (a valid token that does not grant
        an exact protected channel).
        """
        touched = [s for s in subscriptions if self.protected.overlaps(s)]
        if not touched:
            return None
        if not token:
            for subscription in touched:
                if self.protected.encloses(subscription):
                    raise AuthenticationError(
                        f"{subscription.text!r} needs a subscriber token (Authorization: Bearer, "
                        "the token query parameter or the token cookie)",
                        token_presented=False, channel=subscription.text,
                    )
            # Patterns that reach into protected prefixes only deliver open channels.
            return StreamAccess(ChannelAccess(self.protected, ()), None, None)

        claims = self.verifier.verify(token)
        grants = _parse_grants(claims.get(CHANNELS_CLAIM))
        for subscription in touched:
            if subscription.is_exact and not any(g.matches(subscription.text) for g in grants):
                raise AuthorizationError(
                    f"the subscriber token does not grant {subscription.text!r}",
                    channel=subscription.text,
                )
        expires_at = float(claims["exp"]) + self.verifier.leeway
        return StreamAccess(ChannelAccess(self.protected, grants), expires_at,
                            token_fingerprint(token))


def _parse_grants(value: object) -> tuple[Pattern, ...]:
    if not isinstance(value, list) or len(value) > MAX_GRANTS:
        raise AuthenticationError(
            f"the token's {CHANNELS_CLAIM} claim must be a list of at most {MAX_GRANTS} "
            "channel names or patterns",
            token_presented=True,
        )
    grants = []
    for entry in value:
        try:
            grants.append(parse_subscription(entry))
        except InvalidChannelError as error:
            raise AuthenticationError(
                f"the token's {CHANNELS_CLAIM} claim contains an invalid entry: {error.reason}",
                token_presented=True,
            ) from None
    return tuple(grants)


def log_access_policy(settings: Settings, logger: logging.Logger,
                      namespace_prefixes: tuple[str, ...] = ()) -> None:
    """Log, once at start, who may publish and which channels need a subscriber token.

    Raises SettingError when the subscriber token settings are unusable, so
    that a misconfigured gateway stops before it serves anything.
    """
    if settings.publish_tokens:
        limited = sum(1 for _, prefixes in settings.publish_tokens if prefixes)
        logger.info("publishing needs one of %d bearer tokens (%d limited to channel prefixes)",
                    len(settings.publish_tokens), limited)
    else:
        logger.warning("LIVEGATE_PUBLISH_TOKENS is empty: anyone who can reach this gateway "
                       "can publish to every channel; set it unless a proxy in front "
                       "blocks POST /v1/publish")
    subscribe_auth = SubscribeAuth.from_settings(settings, namespace_prefixes)
    if subscribe_auth is None:
        logger.info("every channel is open to subscribers")
    else:
        logger.info("subscriber %s tokens needed for channels under: %s",
                    subscribe_auth.verifier.algorithm,
                    ", ".join(subscribe_auth.protected.prefixes))
