"""Process settings, read from the environment (prefix ``ORCHESTRA_``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from orchestrator.database_url import DATABASE_OPTIONS, connect_options
from orchestrator.errors import SettingsError
from orchestrator.event_loop import EventLoop

PUBLIC_KEY_ALGORITHMS: dict[str, tuple[type, str]] = {
    "RS256": (rsa.RSAPublicKey, "an RSA"),
    "ES256": (ec.EllipticCurvePublicKey, "an EC"),
}
"""The token algorithms checked with a public key, and the kind of key each needs."""

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Settings(BaseSettings):
    """Everything a process needs to reach Kafka and PostgreSQL and to behave."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRA_", extra="ignore", frozen=True, allow_inf_nan=False
    )

    kafka_bootstrap_servers: str = Field(
        default="localhost:9092", description="host:port[,host:port]"
    )
    database_url: str = Field(
        default="postgresql+asyncpg://postgres@localhost/orchestra",
        description="postgresql+asyncpg://user:password@host/db or ...@/db?host=/socket/dir",
    )
    http_port: int = Field(default=8000, ge=1, le=65535)
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        default="none", description="where spans go; otlp reads the OTEL_EXPORTER_OTLP_* variables"
    )
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="a Prometheus scrape port besides the API's /metrics"
    )
    http_host: str = Field(default="0.0.0.0", description="address the HTTP API listens on")
    jwt_secret: SecretStr = Field(
        default=SecretStr("orchestra-dev-jwt-secret-change-me-32b"),
        description="key of the bearer tokens the API accepts (HS*), or a PEM public key",
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256"] = "HS256"
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    api_saga_wait_s: float = Field(
        default=5.0, ge=0, le=60, description="how long the API waits for a saga before 202"
    )
    threeds_key: SecretStr = Field(
        default=SecretStr("orchestra-dev-3ds-key"), description="key of the simulated ACS"
    )
    acs_url: str = Field(
        default="/api/3ds/acs",
        pattern=r"^(/([^/\\\s]\S*)?|https?://\S+)$",
        max_length=500,
        description="where 3-D Secure sends the cardholder (the transaction id appended): the "
        "built-in simulated ACS by default, a path on this API",
    )

    topic_partitions: int = Field(default=8, ge=1, le=1024)
    topic_replication_factor: int = Field(default=1, ge=1, le=16)
    consumer_session_timeout_ms: int = Field(default=10_000, ge=1_000, le=300_000)
    consumer_heartbeat_interval_ms: int = Field(default=3_000, ge=100, le=100_000)
    consumer_fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Kafka answers a fetch once data arrives; the embedded broker waits it out",
    )
    consumer_fetch_quick_wait_ms: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="fetch wait after a one-record batch (fetch pacing); none: always the max",
    )
    consumer_fetch_busy_wait_ms: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="fetch wait after a larger batch, when pacing is on (a quick wait set); "
        "none: the max",
    )
    consumer_max_batch: int = Field(default=500, ge=1, le=10_000)
    consumer_prefetch: bool = Field(
        default=False,
        description="fetch the next batch while one is handled; off: fetch once it is handled, "
        "so a batch takes all that arrived meanwhile instead of the few that beat the fetch",
    )
    event_loop: EventLoop = Field(
        default="uvloop",
        description="uvloop (where installed: Linux, macOS) or the standard asyncio loop",
    )
    consumer_commit_interval_ms: int = Field(
        default=100,
        ge=0,
        le=60_000,
        description="at most one offset commit per interval per consumer; handled records "
        "redelivered after a crash are deduplicated",
    )
    group_prefix: str = Field(default="orchestra", min_length=1, max_length=100)

    kafka_idempotent_producer: bool = False
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None

    db_pool_size: int = Field(default=10, ge=1, le=200)
    step_timeout_s: float = Field(default=30.0, gt=0, le=86_400)
    step_queue_timeout_s: float = Field(default=300.0, ge=0, le=86_400)
    retry_budget: int = Field(default=8, ge=0, le=1_000)
    retry_backoff_s: float = Field(default=0.5, gt=0, le=3_600)
    retry_backoff_max_s: float = Field(default=30.0, gt=0, le=86_400)
    timer_interval_s: float = Field(default=0.5, gt=0, le=60)
    outbox_sweep_interval_s: float = Field(default=1.0, gt=0, le=60)
    outbox_others_after_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="age at which a sweeper takes the outbox rows of another live process",
    )
    max_message_bytes: int = Field(default=1_000_000, ge=1_024, le=8_000_000)

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    card_number_salt: SecretStr = Field(
        default=SecretStr("orchestra-dev-salt"), description="salt of card number hashes"
    )
    giftcard_code_key: SecretStr = Field(
        default=SecretStr("orchestra-dev-giftcard-key"),
        description="key that derives gift card activation codes (billing and notification)",
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port], got {value!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must start with postgresql+asyncpg://")
        try:
            url = make_url(value)
            dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
            _, options = dialect.create_connect_args(url)  # type: ignore[no-untyped-call]
        except (ValueError, ArgumentError) as exc:
            raise ValueError(f"not a valid URL ({exc})") from None
        unknown = sorted(set(url.query) - DATABASE_OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown query parameter {', '.join(unknown)}; "
                f"known: {', '.join(sorted(DATABASE_OPTIONS))}"
            )
        ports = options.get("port")
        for port in [*(ports if isinstance(ports, list) else [ports]), url.port]:
            if port is not None and not 0 < port < 65536:
                raise ValueError(f"port {port} is not between 1 and 65535")
        connect_options(url)
        return value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _check_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _check_jwt_key(self) -> Self:
        key = self.jwt_secret.get_secret_value()
        if not key.strip():
            raise ValueError("ORCHESTRA_JWT_SECRET is empty: no bearer token could be checked")
        if self.jwt_algorithm in PUBLIC_KEY_ALGORITHMS:
            kind, name = PUBLIC_KEY_ALGORITHMS[self.jwt_algorithm]
            try:
                public = serialization.load_pem_public_key(key.encode())
            except (ValueError, TypeError):
                public = None
            if not isinstance(public, kind):
                raise ValueError(
                    f"ORCHESTRA_JWT_ALGORITHM={self.jwt_algorithm} needs ORCHESTRA_JWT_SECRET "
                    f"to be {name} public key in PEM form (-----BEGIN PUBLIC KEY-----)"
                )
        return self

    @model_validator(mode="after")
    def _check_heartbeat(self) -> Self:
        if self.consumer_heartbeat_interval_ms >= self.consumer_session_timeout_ms:
            raise ValueError(
                f"ORCHESTRA_CONSUMER_HEARTBEAT_INTERVAL_MS ({self.consumer_heartbeat_interval_ms}) "
                "must be below ORCHESTRA_CONSUMER_SESSION_TIMEOUT_MS "
                f"({self.consumer_session_timeout_ms}) (a third of it is usual): else the "
                "broker takes the consumer for dead between two heartbeats"
            )
        return self

    @model_validator(mode="after")
    def _check_backoff(self) -> Self:
        if self.retry_backoff_max_s < self.retry_backoff_s:
            raise ValueError(
                f"ORCHESTRA_RETRY_BACKOFF_MAX_S ({self.retry_backoff_max_s}) is below "
                f"ORCHESTRA_RETRY_BACKOFF_S ({self.retry_backoff_s}): the longest wait between "
                "two tries cannot be shorter than the first"
            )
        return self

    @model_validator(mode="after")
    def _check_sasl_credentials(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL") and not (
            (self.kafka_sasl_username or "").strip() and self.kafka_sasl_password
        ):
            raise ValueError(
                f"ORCHESTRA_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "ORCHESTRA_KAFKA_SASL_USERNAME and ORCHESTRA_KAFKA_SASL_PASSWORD"
            )
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        return [server.strip() for server in self.kafka_bootstrap_servers.split(",")]

    def development_secrets(self) -> list[str]:
        """The variables of the keys still at their public development defaults, or at a
        placeholder of a manifest (``CHANGE-ME``)."""
        return [
            f"ORCHESTRA_{name.upper()}"
            for name, field in type(self).model_fields.items()
            if isinstance(field.default, SecretStr)
            and (
                getattr(self, name) == field.default
                or _PLACEHOLDER.search(getattr(self, name).get_secret_value())
            )
        ]


_PLACEHOLDER = re.compile(r"change[-_ ]?me", re.IGNORECASE)


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning a validation failure into one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"ORCHESTRA_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            if err["loc"]
            else err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise SettingsError(f"bad settings: {problems}") from None
