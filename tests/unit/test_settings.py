"""Settings that cannot work are refused when they load, one line naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from orchestrator.database_url import connect_options, place
from orchestrator.errors import SettingsError
from orchestrator.settings import Settings, load_settings
from tests.unit.test_tokens import public_pem

EMBEDDED_URL = "postgresql+asyncpg://postgres:@/orchestra?host=/tmp/pg&port=5432"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+asyncpg://postgres@127.0.0.1:notaport/x", "not a valid URL"),
        ("postgresql+asyncpg://postgres@127.0.0.1:99999/x", "port 99999"),
        ("postgresql+asyncpg://postgres@127.0.0.1/x?foo=bar", "unknown query parameter foo"),
        ("postgresql+asyncpg://postgres@/x?host=/tmp&port=abc", "not a valid URL"),
        ("postgresql+asyncpg://postgres@127.0.0.1:0/x", "port 0"),
        (f"{EMBEDDED_URL}&timeout=abc", "timeout='abc' is not a number of seconds"),
        (f"{EMBEDDED_URL}&command_timeout=-1", "command_timeout='-1'"),
        (f"{EMBEDDED_URL}&max_cacheable_statement_size=abc", "not a whole number"),
        (f"{EMBEDDED_URL}&target_session_attrs=bogus", "is not one of any, primary"),
        (f"{EMBEDDED_URL}&ssl=maybe", "ssl='maybe' is not one of disable"),
        (f"{EMBEDDED_URL}&direct_tls=sure", "is not true or false"),
        (f"{EMBEDDED_URL}&server_settings=x", "server_settings is a mapping"),
        (f"{EMBEDDED_URL}&timeout=1&timeout=2", "timeout is given 2 times"),
    ],
)
def test_a_database_url_that_cannot_connect_is_refused(url: str, says: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(database_url=url)
    assert "ORCHESTRA_DATABASE_URL" in str(refused.value)
    assert says in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        EMBEDDED_URL,
        "postgresql+asyncpg://u:p@db:5432/x?ssl=require&command_timeout=5",
        "postgresql+asyncpg://u@db/x?prepared_statement_cache_size=0",
        f"{EMBEDDED_URL}&timeout=5&command_timeout=2.5&direct_tls=false",
        f"{EMBEDDED_URL}&ssl=verify_full",
    ],
)
def test_working_database_urls_load(url: str) -> None:
    assert load_settings(database_url=url).database_url == url


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (EMBEDDED_URL, "socket folder /tmp/pg (port 5432), database orchestra"),
        ("postgresql+asyncpg://u:secret@db:6432/x", "db:6432, database x"),
    ],
)
def test_a_database_is_named_by_where_it_is_never_its_password(url: str, named: str) -> None:
    assert place(make_url(url)) == named


def test_query_options_reach_the_driver_as_numbers_and_flags() -> None:
    url = make_url(f"{EMBEDDED_URL}&timeout=5&command_timeout=2.5&direct_tls=no&ssl=prefer")
    assert connect_options(url) == {
        "timeout": 5.0,
        "command_timeout": 2.5,
        "direct_tls": False,
        "ssl": "prefer",
    }


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_needs_a_username_and_a_password(protocol: str) -> None:
    with pytest.raises(SettingsError, match="ORCHESTRA_KAFKA_SASL_USERNAME") as refused:
        load_settings(kafka_security_protocol=protocol, kafka_sasl_username="alice")
    assert str(refused.value).count("\n") == 0
    settings = load_settings(
        kafka_security_protocol=protocol, kafka_sasl_username="alice", kafka_sasl_password="pw"
    )
    assert settings.kafka_sasl_username == "alice"


@pytest.mark.parametrize("name", ["kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"])
def test_tls_files_must_exist(name: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "nonexistent.pem")
    with pytest.raises(SettingsError, match=f"ORCHESTRA_{name.upper()}.*no such file"):
        load_settings(kafka_security_protocol="SSL", **{name: missing})


def test_a_tls_file_that_is_not_pem_is_a_settings_error(tmp_path: Path) -> None:
    from orchestrator.kafka import admin_kwargs

    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    settings = load_settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(garbage))
    with pytest.raises(SettingsError, match="ORCHESTRA_KAFKA_SSL"):
        admin_kwargs(settings)


def test_keys_left_at_their_development_defaults_are_named() -> None:
    defaults = load_settings().development_secrets()
    assert "ORCHESTRA_JWT_SECRET" in defaults
    assert "ORCHESTRA_CARD_NUMBER_SALT" in defaults
    chosen = load_settings(jwt_secret=SecretStr("k" * 40), card_number_salt=SecretStr("s" * 16))
    assert {"ORCHESTRA_JWT_SECRET", "ORCHESTRA_CARD_NUMBER_SALT"}.isdisjoint(
        chosen.development_secrets()
    )
    placeholder = load_settings(card_number_salt=SecretStr("CHANGE-ME"))
    assert "ORCHESTRA_CARD_NUMBER_SALT" in placeholder.development_secrets()


def test_the_deployment_example_lists_every_setting() -> None:
    example = (Path(__file__).parents[2] / "deploy" / "orchestra.env.example").read_text()
    listed = {line.lstrip("# ").split("=")[0] for line in example.splitlines() if "=" in line}
    assert {f"ORCHESTRA_{name.upper()}" for name in Settings.model_fields} <= listed


def test_every_development_key_is_warned_of_by_a_service_that_reads_it() -> None:
    from orchestrator.app import KEYS_USED_BY

    warned = {key for keys in KEYS_USED_BY.values() for key in keys}
    assert warned == set(load_settings().development_secrets())


def test_an_empty_token_key_is_refused() -> None:
    with pytest.raises(SettingsError, match="ORCHESTRA_JWT_SECRET is empty"):
        load_settings(jwt_secret=SecretStr(" "))


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_public_key_algorithm_needs_its_kind_of_pem_public_key(algorithm: str) -> None:
    with pytest.raises(SettingsError, match=f"{algorithm} needs ORCHESTRA_JWT_SECRET"):
        load_settings(jwt_algorithm=algorithm, jwt_secret=SecretStr("not a key"))
    other = "ES256" if algorithm == "RS256" else "RS256"
    with pytest.raises(SettingsError, match="public key in PEM form"):
        load_settings(jwt_algorithm=algorithm, jwt_secret=SecretStr(public_pem(other)))
    assert load_settings(jwt_algorithm=algorithm, jwt_secret=SecretStr(public_pem(algorithm)))


def test_a_heartbeat_must_come_within_the_session_timeout() -> None:
    with pytest.raises(SettingsError, match=r"HEARTBEAT_INTERVAL_MS .* must be below"):
        load_settings(consumer_heartbeat_interval_ms=20_000, consumer_session_timeout_ms=10_000)


def test_backoffs_numbers_and_the_acs_url_must_make_sense(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SettingsError, match=r"RETRY_BACKOFF_MAX_S \(0.1\) is below"):
        load_settings(retry_backoff_s=0.5, retry_backoff_max_s=0.1)
    for elsewhere in ("//evil.example/acs", "/\\evil.example/acs", "javascript:alert(1)"):
        with pytest.raises(SettingsError, match="ORCHESTRA_ACS_URL"):
            load_settings(acs_url=elsewhere)
    assert load_settings(acs_url="https://acs.bank.example/3ds").acs_url.startswith("https://")
    monkeypatch.setenv("ORCHESTRA_STEP_TIMEOUT_S", "nan")
    with pytest.raises(SettingsError, match="STEP_TIMEOUT_S: Input should be a finite number"):
        load_settings()


def test_a_blank_sasl_username_is_no_username() -> None:
    with pytest.raises(SettingsError, match="ORCHESTRA_KAFKA_SASL_USERNAME"):
        load_settings(
            kafka_security_protocol="SASL_SSL", kafka_sasl_username="  ", kafka_sasl_password="pw"
        )
