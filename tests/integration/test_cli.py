"""The command line: bad settings and unknown services are one clear line, never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from events import topics
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack, free_port
from tests.integration.helpers import card_outcomes, card_request, orchestra, query


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def test_bad_setting_is_one_clear_line() -> None:
    run = _run("run", ORCHESTRA_DATABASE_URL="mysql://nope")
    assert run.returncode == 2
    assert "ORCHESTRA_DATABASE_URL" in run.stderr
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_bad_bootstrap_servers_are_refused() -> None:
    run = _run("run", ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS="no-port-here")
    assert run.returncode == 2
    assert "ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS" in run.stderr


def test_unknown_service_is_named() -> None:
    run = _run("run", "teleporter")
    assert run.returncode == 2
    assert "unknown service 'teleporter'" in run.stderr
    assert "Traceback" not in run.stderr


def test_unreachable_kafka_is_one_clear_line() -> None:
    run = _run(
        "run",
        "billing",
        ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        ORCHESTRA_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:1/none",
    )
    assert run.returncode == 2
    assert "orchestra: error:" in run.stderr
    assert "Traceback" not in run.stderr


def test_dev_prints_both_urls_runs_and_stops_on_sigterm() -> None:
    import signal
    import time

    import httpx

    from orchestrator.embedded import free_port

    port = free_port()

    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "dev"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={
            **os.environ,
            "ORCHESTRA_LOG_LEVEL": "WARNING",
            "ORCHESTRA_HTTP_PORT": str(port),
            "ORCHESTRA_TOPIC_PARTITIONS": "2",  # one by default; more when asked for
        },
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(7)]
        assert lines[0].startswith("# paste these")
        exports = lines[1:4]
        assert exports[0].startswith("export ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:")
        assert exports[1].startswith("export ORCHESTRA_DATABASE_URL='postgresql+asyncpg://")
        assert exports[2] == "export ORCHESTRA_TOPIC_PARTITIONS=2"
        assert f"127.0.0.1:{port}" in lines[4]
        token = lines[5].rsplit(" ", 1)[1]
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/v1/cards/virtual/requests/none",
                    headers={"Authorization": f"Bearer {token}"},
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the API never answered"
                time.sleep(0.3)
        assert answer.status_code == 404  # authenticated by the printed token, no such request
        pasted = subprocess.run(  # the printed lines, pasted into a shell as they are
            [
                "bash",
                "-c",
                "\n".join([*exports, f"{sys.executable} -m orchestrator.cli sagas list"]),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")},
        )
        assert pasted.returncode == 0, pasted.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_docs_writes_asyncapi_of_every_topic_and_the_openapi(tmp_path: Path) -> None:

    run = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "docs", "--out", str(tmp_path / "docs")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    document = json.loads((tmp_path / "docs" / "asyncapi.json").read_text())
    channels = set(document["channels"])
    contract = {
        "customers.registered",
        "customers.status",
        "wallets.topup-requested",
        "wallets.status",
        "store.stock-received",
        "delivery.points-updated",
        "orders.submitted",
        "orders.status",
        "giftcards.purchase-requested",
        "giftcards.activation-requested",
        "giftcards.status",
        "cards.issue-requested",
        "cards.status",
        "notifications.sent",
        "orders.submitted.dlq",
    }
    assert contract <= channels
    schemas = json.dumps(document["components"])
    for model in ("OrderSubmitted", "OrderStatusChanged", "ReserveStock"):
        assert model in schemas
    messages = document["components"]["messages"]
    order = messages["orders.submitted:SubscribeMessage"]
    assert order["correlationId"]["location"] == "$message.header#/ce_correlationid"
    assert "ce_id" in order["headers"]["properties"]
    gift_cards = messages["giftcards.status:Message"]["payload"]["$ref"].rsplit("/", 1)[-1]
    either = {
        kind["$ref"].rsplit("/", 1)[-1]
        for kind in document["components"]["schemas"][gift_cards]["anyOf"]
    }
    assert either == {"GiftCardPurchaseStatus", "GiftCardActivationStatus"}  # two sagas' outcomes
    letter = messages["orders.submitted.dlq:Message"]
    assert "$ref" not in letter["payload"]  # the refused bytes as they were, maybe no JSON
    assert {"dlq_reason", "dlq_error", "dlq_offset"} <= set(letter["headers"]["required"])
    openapi = json.loads((tmp_path / "docs" / "openapi.json").read_text())
    assert "/v1/cards/virtual" in openapi["paths"]
    assert (tmp_path / "docs" / "asyncapi.html").read_text().lstrip().startswith("<")


def _refused(run: subprocess.CompletedProcess[str], says: str) -> None:
    assert run.returncode == 2, run.stdout + run.stderr
    assert says in run.stderr
    assert "Traceback" not in run.stderr


UNCONNECTABLE_SETTINGS = [
    (
        {"ORCHESTRA_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:notaport/x"},
        "ORCHESTRA_DATABASE_URL",
    ),
    (
        {"ORCHESTRA_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1/x?foo=bar"},
        "unknown query parameter foo",
    ),
    (
        {"ORCHESTRA_DATABASE_URL": "postgresql+asyncpg://postgres@db/x?timeout=abc"},
        "timeout='abc'",
    ),
    ({"ORCHESTRA_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "SASL_USERNAME"),
    (
        {
            "ORCHESTRA_KAFKA_SECURITY_PROTOCOL": "SSL",
            "ORCHESTRA_KAFKA_SSL_CAFILE": "/nonexistent.pem",
        },
        "ORCHESTRA_KAFKA_SSL_CAFILE",
    ),
]


@pytest.mark.parametrize("command", [("run",), ("sagas", "list")])
@pytest.mark.parametrize(("env", "says"), UNCONNECTABLE_SETTINGS)
def test_settings_that_cannot_connect_are_one_clear_line(
    command: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    run = _run(*command, **env)
    _refused(run, says)
    assert len(run.stderr.strip().splitlines()) == 1


REFUSED_ARGUMENTS = [
    (("sagas", "list", "--status", "BOGUS"), "choose from 'RUNNING'"),
    (("sagas", "list", "--limit", "-1"), "--limit: must not be negative"),
    (("replay", "orders.submitted", "--partition", "-1"), "must not be negative"),
    (("replay", "orders.submitted", "--from-offset", "-5"), "must not be negative"),
    (("dlq", "show", "orders.submitted", "--partition", "0", "--offset", "-1"), "negative"),
    (("dlq", "redrive", "orders.submitted", "--reason", "NOPE"), "'TOO_LARGE'"),
    (("dlq", "list", "--reason", "NOPE"), "'HANDLER_ERROR'"),
    (
        ("replay", "orders.submitted", "--from-offset", "10", "--to-offset", "2"),
        "--from-offset 10 is after --to-offset 2",
    ),
    (
        (
            "replay",
            "orders.submitted",
            "--since",
            "2026-11-26T10:00:00Z",
            "--until",
            "2026-11-25T10:00:00Z",
        ),
        "is after --until",
    ),
    (
        ("sagas", "trace", "some-order", "--svg", "/nonexistent/dir/t.svg"),
        "cannot write /nonexistent/dir/t.svg: no folder /nonexistent/dir",
    ),
    (
        ("sagas", "trace", "some-order", "--svg", "{tmp}/t.svg", "--html", "/proc/t"),
        "cannot write /proc/t",
    ),
    (("sagas", "list", "--key", ""), "--key: must not be empty"),
    (
        ("replay", "orders.submitted", "--to-topic", "orders.submitted.dlq"),
        "would make letters without them",
    ),
    (
        ("replay", "orders.submitted.dlq", "--to-topic", "orders.submitted"),
        "holds dead letters: `orchestra dlq redrive` sends them back",
    ),
    (
        ("dlq", "redrive", "orders.submitted", "--offset", "0", "--all"),
        "argument --all: not allowed with argument --offset",
    ),
    (
        ("dlq", "redrive", "orders.submitted", "--reason", "TOO_LARGE", "--all"),
        "not allowed with argument",
    ),
    (("demo", "--users", "0"), "--users: the number of users is at least 1, not 0"),
    (("dev", "--kafka-port", "70000"), "not a port: 70000"),
    (("sagas", "list", "--older-than", "99999999999d"), "--older-than: age 99999999999d out"),
    (("sagas", "list", "--limit", "99999999999999999999"), "the limit is at most 10000"),
    (("sagas", "compensate", "some-order", "--why", ""), "--why: must not be empty"),
    (("sagas", "retry", "some-order", "--why", " "), "--why: must not be empty"),
    (
        ("replay", "orders.submitted", "--from-offset", "99999999999999999999"),
        "a Kafka offset is at most 9223372036854775807",
    ),
    (
        ("replay", "orders.submitted", "--since", "2026-11-27"),
        "give a time zone, e.g. 2026-11-27T00:00:00Z",
    ),
    (
        ("replay", "orders.submitted", "--since", "2026-11-27+00:00"),
        "a time zone needs a time of day: '2026-11-27+00:00'; e.g. 2026-11-27T00:00:00+00:00",
    ),
]
"""Arguments refused before any connection, and what the refusal says."""


@pytest.mark.parametrize(("args", "says"), REFUSED_ARGUMENTS)
def test_arguments_that_cannot_be_right_are_refused_before_any_connection(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    # nothing listens here: each is refused before Kafka or PostgreSQL is asked
    _refused(
        _run(
            *(arg.replace("{tmp}", str(tmp_path)) for arg in args),
            ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
            ORCHESTRA_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:1/none",
        ),
        says,
    )


def test_operator_commands_with_kafka_unreachable_say_so_in_one_line() -> None:
    for args in (("dlq", "list"), ("replay", "orders.submitted", "--to-topic", "x")):
        run = _run(*args, ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
        _refused(run, "cannot reach Kafka")
        assert len(run.stderr.strip().splitlines()) == 1


@pytest.mark.usefixtures("running_app")
async def test_the_database_urls_numbers_and_flags_reach_the_driver(stack: EmbeddedStack) -> None:
    """They reached asyncpg as text: ``?timeout=5`` failed every command with a TypeError."""
    options = "timeout=5&command_timeout=30&max_cacheable_statement_size=4096&direct_tls=false"
    joined = "&" if "?" in stack.database_url else "?"
    listed = await orchestra(
        stack, "sagas", "list", ORCHESTRA_DATABASE_URL=f"{stack.database_url}{joined}{options}"
    )
    assert listed.returncode == 0, listed.stderr


def _into_a_closed_pipe(stack: EmbeddedStack, *args: str) -> tuple[int, str]:
    command = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
            "ORCHESTRA_DATABASE_URL": stack.database_url,
            "PYTHONUNBUFFERED": "1",  # the first line written meets the closed pipe
        },
    )
    assert command.stdout is not None
    command.stdout.close()  # the reader left, as ``| head -1`` does
    _, stderr = command.communicate(timeout=60)
    return command.returncode, stderr


@pytest.mark.usefixtures("running_app")
async def test_output_whose_reader_left_is_no_database_error(stack: EmbeddedStack) -> None:
    """It was reported as PostgreSQL out of reach. The exit is rich's for a table: 1, silent."""
    async with UpstreamClient(stack.settings(), watch=[topics.CARDS_STATUS]) as client:
        request = card_request()
        await client.send(topics.CARDS_ISSUE_REQUESTED, request)
        await card_outcomes(client, [request.request_id])  # one saga at least to list
    for args in (("sagas", "list", "--json"), ("sagas", "list")):
        code, stderr = await asyncio.to_thread(_into_a_closed_pipe, stack, *args)
        assert (code, stderr) == (1, ""), args


async def test_a_statement_postgresql_refuses_is_one_line(stack: EmbeddedStack) -> None:
    """A table of another shape (an older release's, say): 42703, not a traceback."""
    name = f"odd_{uuid.uuid4().hex[:12]}"
    maintenance = make_url(stack.database_url).set(database="postgres")
    admin = create_async_engine(maintenance, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE DATABASE {name}"))
    finally:
        await admin.dispose()
    odd = create_async_engine(maintenance.set(database=name))
    try:
        async with odd.begin() as conn:
            await conn.execute(text("CREATE TABLE saga_instances (id uuid)"))
    finally:
        await odd.dispose()
    url = maintenance.set(database=name).render_as_string(hide_password=False)
    listed = await orchestra(stack, "sagas", "list", ORCHESTRA_DATABASE_URL=url)
    assert listed.returncode == 2, listed.stderr
    (line,) = listed.stderr.splitlines()
    assert line.startswith("orchestra: error: PostgreSQL refused: ")


async def test_a_database_without_saga_tables_is_named_as_such(stack: EmbeddedStack) -> None:
    url = make_url(stack.database_url).set(database="postgres")
    listed = await orchestra(
        stack, "sagas", "list", ORCHESTRA_DATABASE_URL=url.render_as_string(hide_password=False)
    )
    assert listed.returncode == 2
    assert listed.stderr.startswith("orchestra: error: this database holds no saga tables yet")


def test_a_metrics_port_taken_is_one_clear_line(stack: EmbeddedStack) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        run = _run(
            "run",
            "payment",
            ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS=stack.kafka_bootstrap_servers,
            ORCHESTRA_DATABASE_URL=stack.database_url,
            ORCHESTRA_METRICS_PORT=str(taken.getsockname()[1]),
            ORCHESTRA_LOG_LEVEL="WARNING",
        )
    _refused(run, "the metrics endpoint cannot listen on port")


def test_dev_refuses_ports_taken_before_starting_anything() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        shared = str(free_port())  # free, but given to the broker and the API both
        for args, env, says in (
            (("dev", "--kafka-port", port), {}, f"--kafka-port {port} is taken"),
            (("dev",), {"ORCHESTRA_HTTP_PORT": port}, f"ORCHESTRA_HTTP_PORT {port} is taken"),
            (
                ("dev",),
                {"ORCHESTRA_METRICS_PORT": port, "ORCHESTRA_HTTP_PORT": str(free_port())},
                f"ORCHESTRA_METRICS_PORT {port} is taken",
            ),
            (
                ("dev", "--kafka-port", shared),
                {"ORCHESTRA_HTTP_PORT": shared},
                f"--kafka-port {shared} is also the HTTP or metrics port",
            ),
            (
                ("dev",),
                {"ORCHESTRA_HTTP_PORT": shared, "ORCHESTRA_METRICS_PORT": shared},
                f"ORCHESTRA_METRICS_PORT is ORCHESTRA_HTTP_PORT ({shared})",
            ),
        ):
            run = _run(*args, **env)
            _refused(run, says)
            assert run.stdout == ""  # no broker, database or URL of someone else's
            assert len(run.stderr.strip().splitlines()) == 1


def test_send_refuses_a_payload_that_is_not_utf8_in_one_line() -> None:
    body = b'{"customer_id": "c-\xff", "username": "u", "email": "a@b.test"}'
    command = [sys.executable, "-m", "orchestrator.cli", "send", topics.CUSTOMERS_REGISTERED]
    for args, piped in (([body], None), ([b"-"], body)):
        run = subprocess.run(
            [*command, *args], input=piped, capture_output=True, timeout=60, check=False
        )
        assert (run.returncode, b"Traceback" in run.stderr) == (2, False), run.stderr
        assert b"the payload is not UTF-8 text" in run.stderr


def test_sigterm_cuts_a_command_short_and_its_exit_status_says_so() -> None:
    """A supervisor's SIGTERM (or ``timeout``) stops ``send --wait`` before its outcome came:
    128 + 15, not a success."""
    payload = '{"customer_id": "c-1", "username": "u", "email": "a@b.test"}'
    with socket.socket() as silent:  # a broker that accepts and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(90)
        command = [sys.executable, "-m", "orchestrator.cli", "send", topics.CUSTOMERS_REGISTERED]
        process = subprocess.Popen(
            [*command, payload, "--wait", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{silent.getsockname()[1]}",
            },
        )
        try:
            connection, _ = silent.accept()  # the command runs: its arguments were read
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=30)
            connection.close()
        finally:
            if process.poll() is None:
                process.kill()
    assert (process.returncode, "Traceback" in errors) == (128 + signal.SIGTERM, False), errors


@pytest.mark.usefixtures("running_app")
async def test_send_publishes_a_checked_record_and_prints_its_outcome(stack: EmbeddedStack) -> None:
    """A first event from the command line: a registration with only what seed 003 requires
    (username, password aside, and e-mail) opens the client's wallet and an e-mail channel."""
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    payload = (
        f'{{"customer_id": "{customer_id}", "username": "{customer_id}", "email": "a@b.test"}}'
    )
    sent = await orchestra(stack, "send", topics.CUSTOMERS_REGISTERED, payload, "--wait", "60")
    assert sent.returncode == 0, sent.stderr
    said, outcome = sent.stdout.strip().splitlines()
    assert said.startswith(f"sent to {topics.CUSTOMERS_REGISTERED}, key {customer_id}, ce_id ")
    assert '"status":"ACTIVE"' in outcome.replace(" ", "")
    assert "earlier record" not in sent.stderr
    again = await orchestra(stack, "send", topics.CUSTOMERS_REGISTERED, payload, "--wait", "60")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[1] == outcome
    assert f"an earlier record under key {customer_id}" in again.stderr
    channels = await query(
        stack.database_url,
        "SELECT a.first_name, c.channel FROM notification_accounts a"
        " JOIN notification_channels c USING (account_id) WHERE a.customer_id = :c",
        c=customer_id,
    )
    assert channels == [(customer_id, "email")]

    invoice = {  # its outcome is keyed by the card, not by the payment
        "payment_id": f"p-{customer_id}",
        "card_id": f"card-{customer_id}",
        "source_account_id": "acc-1",
        "amount_minor": 1000,
        "currency": "USD",
    }
    paid = await orchestra(
        stack, "send", topics.CARDS_INVOICE_PAYMENT_REQUESTED, json.dumps(invoice), "--wait", "60"
    )
    assert paid.returncode == 0, paid.stderr
    assert f'"payment_id":"p-{customer_id}"' in paid.stdout.replace(" ", "")

    for args, said_so in (
        (("{not json",), "the payload is not JSON"),
        (
            ('{"customer_id": "c-1", "username": "u"}',),
            "not a record of customers.registered: email",
        ),
        (('{"customer_id": "c-2", "username": "a\\u0000b", "email": "a@b.test"}',), "NUL"),
        ((payload, "--wait", "nan"), "--wait: seconds from 0 to 3600, not 'nan'"),
    ):
        refused = await orchestra(stack, "send", topics.CUSTOMERS_REGISTERED, *args)
        assert (refused.returncode, "Traceback" in refused.stderr) == (2, False)
        assert said_so in refused.stderr
    stock = '{"sku": "S-1", "warehouse_id": "W-1", "quantity": 1}'
    feed = await orchestra(stack, "send", topics.STORE_STOCK_RECEIVED, stock, "--wait", "5")
    assert (feed.returncode, "is a feed" in feed.stderr) == (2, True)
    nowhere = await orchestra(
        stack,
        "send",
        topics.STORE_STOCK_RECEIVED,
        stock,
        ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
    )
    assert (nowhere.returncode, "Traceback" in nowhere.stderr) == (2, False)
    assert "cannot reach Kafka" in nowhere.stderr
    assert len(nowhere.stderr.strip().splitlines()) == 1, nowhere.stderr
    unknown = await orchestra(stack, "send", "orders.status", "{}")
    assert unknown.returncode == 2
    assert "invalid choice" in unknown.stderr
