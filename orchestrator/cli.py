"""The ``orchestra`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from orchestrator import event_loop
from orchestrator import logging as orchestra_logging
from orchestrator.arguments import at_most, port
from orchestrator.errors import OrchestraError
from orchestrator.settings import load_settings


def _parser() -> argparse.ArgumentParser:
    from orchestrator.app import SERVICES

    parser = argparse.ArgumentParser(
        prog="orchestra",
        description="Saga orchestration on Kafka. Settings come from ORCHESTRA_* variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run services against the configured Kafka and PostgreSQL"
    )
    run.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help=f"any of: {', '.join(SERVICES)} (default: all)",
    )

    dev = commands.add_parser(
        "dev", help="start the embedded broker and PostgreSQL and run every service"
    )
    dev.add_argument(
        "--kafka-port",
        type=port,
        default=None,
        help="broker port (default: a free one); refused if something listens there already",
    )

    demo = commands.add_parser(
        "demo", help="card sagas, the shop's sagas and the card HTTP API, on the embedded stack"
    )
    demo.add_argument(
        "--users",
        type=at_most(10_000, "the number of users", lowest=1),
        default=40,
        help="how many users ask for cards, 1-10000 (default 40)",
    )

    bench = commands.add_parser(
        "bench", help="measure sagas/s and latency beside the bare-Kafka ceiling"
    )
    bench.add_argument(
        "-n",
        "--sagas",
        type=at_most(10_000_000, "the number of sagas", lowest=1),
        default=20_000,
        help="measured sagas, at most 10000000 (default 20000)",
    )
    bench.add_argument(
        "-c",
        "--concurrency",
        type=at_most(100_000, "the sagas in flight", lowest=1),
        default=100,
        help="sagas in flight, at most 100000 (default 100)",
    )
    bench.add_argument(
        "--warmup",
        type=at_most(1_000_000, "the warm-up"),
        default=500,
        help="sagas before measuring, at most 1000000 (default 500)",
    )
    bench.add_argument(
        "--no-ceiling", action="store_true", help="skip the bare aiokafka ceiling run"
    )
    bench.add_argument(
        "--external",
        action="store_true",
        help="use the configured Kafka and PostgreSQL, not the embedded stack",
    )
    bench.add_argument(
        "--saga",
        choices=["standard", "card-issuance", "order-checkout"],
        default="standard",
        help="standard 3-step saga (default), or a real saga with its real workers",
    )
    bench.add_argument(
        "--one-process",
        action="store_true",
        help="orchestrator and workers in one process (default: two, orchestrator | workers)",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    docs = commands.add_parser(
        "docs", help="write the AsyncAPI document of every topic, and the HTTP API's OpenAPI"
    )
    docs.add_argument("--out", default=".", help="folder to write into (default: here)")

    from orchestrator.ops import sagas_cli, send_cli, topics_cli

    sagas_cli.add_parser(commands)
    topics_cli.add_parsers(commands)
    send_cli.add_parser(commands)
    return parser


def _operator_logging(fmt: str) -> None:
    """Operator commands report a failure as one line of their own: aiokafka's log lines
    about the same failure would only add noise on stderr."""
    orchestra_logging.configure("WARNING", fmt)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _stop_before_start(signum: int, _frame: object) -> None:
    """SIGTERM before the services are up: nothing is in flight, leave at once."""
    raise SystemExit(0)


def _cut_short(signum: int, _frame: object) -> None:
    """SIGTERM of a command that has work to finish (send, replay, a re-drive, a prune, the
    demo, a benchmark): it stops, and its exit status says it did not finish."""
    raise SystemExit(128 + signum)


_SERVING = ("run", "dev")
"""Commands whose SIGTERM is the way to stop them: serve's own handler takes it, once up."""


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_before_start)
    try:
        args = _parser().parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while the commands' modules load
        return 130
    if args.command not in _SERVING:
        signal.signal(signal.SIGTERM, _cut_short)
    try:
        if args.command == "run":
            settings = load_settings()
            orchestra_logging.configure(settings.log_level, settings.log_format)
            from orchestrator.app import resolve_services
            from orchestrator.serve import serve

            event_loop.run(serve(settings, resolve_services(args.services)), settings.event_loop)
        elif args.command == "dev":
            from orchestrator.dev import run_dev

            loop = load_settings().event_loop  # before the coroutine: a bad setting stops here
            event_loop.run(run_dev(args.kafka_port), loop)
        elif args.command == "demo":
            from orchestrator.demo import run_demo

            loop = load_settings().event_loop
            return event_loop.run(run_demo(users=args.users), loop)
        elif args.command == "bench":
            from orchestrator.benchmark.runner import BenchOptions, run_bench

            options = BenchOptions(
                sagas=args.sagas,
                concurrency=args.concurrency,
                warmup=args.warmup,
                with_ceiling=not args.no_ceiling,
                external=args.external,
                as_json=args.json,
                saga=args.saga,
                split=not args.one_process,
            )
            settings = load_settings()
            _operator_logging(settings.log_format)
            configured = settings if args.external else None
            report = event_loop.run(run_bench(options, configured), settings.event_loop)
            return 0 if report["outcomes_ok"] else 1
        elif args.command == "sagas":
            settings = load_settings()
            _operator_logging(settings.log_format)
            from orchestrator.ops import sagas_cli

            return event_loop.run(sagas_cli.run(args, settings), settings.event_loop)
        elif args.command == "docs":
            from orchestrator.docs import write_docs

            for path in write_docs(load_settings(), args.out):
                print(path)
        elif args.command == "send":
            settings = load_settings()
            _operator_logging(settings.log_format)
            from orchestrator.ops import send_cli

            return event_loop.run(send_cli.run(args, settings), settings.event_loop)
        elif args.command in ("replay", "dlq"):
            settings = load_settings()
            _operator_logging(settings.log_format)
            from orchestrator.ops import topics_cli

            handler = topics_cli.replay if args.command == "replay" else topics_cli.dead_letters
            return event_loop.run(handler(args, settings), settings.event_loop)
    except OrchestraError as exc:
        print(f"orchestra: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader of the output left (| head): silent, as rich is
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
