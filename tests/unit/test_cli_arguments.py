"""Operator arguments that cannot be right are one argparse line, exit 2; the hints they
give are forms the command accepts."""

from __future__ import annotations

import argparse
import getpass
import os
import re
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.arguments import MAX_OFFSET, MAX_PARTITION, age, moment
from orchestrator.cli import _parser
from orchestrator.ops.sagas_cli import login_name


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        _parser().parse_args(argv)
    assert stopped.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("sagas", "list", "--older-than", "99999999999d"), "out of range: at most 36500d"),
        (("sagas", "list", "--older-than", "99999999d"), "out of range"),
        (("sagas", "list", "--older-than", "\u00b2d"), "an age looks like 90s"),
        (("sagas", "list", "--limit", "99999999999999999999"), "the limit is at most 10000"),
        (("sagas", "list", "--limit", "0"), "the limit is at least 1, not 0"),
        (("sagas", "compensate", "x", "--why", ""), "--why: must not be empty"),
        (("sagas", "retry", "x", "--why", "   "), "--why: must not be empty"),
        (("sagas", "retry", "x", "--why", "ok", "--actor", " "), "--actor: must not be empty"),
        (("sagas", "retry", "x", "--why", "ok", "--actor", "a" * 129), "at most 128 characters"),
        (("sagas", "retry", "x", "--why", "a" * 1_001), "at most 1000 characters"),
        (("demo", "--users", "9" * 23), "the number of users is at most 10000"),
        (("bench", "-n", "0"), "the number of sagas is at least 1, not 0"),
        (("bench", "-c", "1" + "0" * 12), "the sagas in flight is at most 100000"),
        (
            ("replay", "t", "--from-offset", "99999999999999999999"),
            f"a Kafka offset is at most {MAX_OFFSET}",
        ),
        (("replay", "t", "--to-offset", str(MAX_OFFSET + 1)), "a Kafka offset is at most"),
        (
            ("replay", "t", "--partition", str(MAX_PARTITION + 1)),
            f"a Kafka partition is at most {MAX_PARTITION}",
        ),
        (("dlq", "show", "t", "--partition", "0", "--offset", "1" + "0" * 19), "offset is at most"),
        (("dlq", "redrive", "t", "--partition", "9" * 12, "--all"), "partition is at most"),
        (("replay", "t", "--since", "9999-12-31T23:59:59-05:00"), "time out of range"),
        (("sagas", "show", "\udcff"), "not UTF-8 text"),
        (("sagas", "list", "--key", "a\udcff"), "not UTF-8 text"),
        (("sagas", "list", "--type", "\udcff"), "not UTF-8 text"),
        (("sagas", "retry", "x", "--why", "\udcff"), "not UTF-8 text"),
    ],
)
def test_values_out_of_range_are_one_clear_line(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], says: str
) -> None:
    line = _refused(capsys, *argv)
    assert line.startswith("orchestra ")
    assert says in line


def test_bounds_themselves_are_accepted() -> None:
    args = _parser().parse_args(
        ["replay", "t", "--from-offset", str(MAX_OFFSET), "--partition", str(MAX_PARTITION)]
    )
    assert (args.from_offset, args.partition) == (MAX_OFFSET, [MAX_PARTITION])
    listing = _parser().parse_args(["sagas", "list", "--limit", "10000", "--older-than", "36500d"])
    assert (listing.limit, listing.older_than) == (10_000, timedelta(days=36_500))
    assert age("90s") == timedelta(seconds=90)


def _hint(text: str) -> str:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        moment(text)
    return str(refused.value)


@pytest.mark.parametrize(
    ("text", "suggested"),
    [
        ("2026-11-27", "2026-11-27T00:00:00Z"),
        ("2026-11-27", "2026-11-27T00:00:00+00:00"),
        ("2026-11-27Z", "2026-11-27T00:00:00Z"),
        ("2026-11-27+00:00", "2026-11-27T00:00:00+00:00"),
        ("2026-11-27-05:00", "2026-11-27T00:00:00-05:00"),
        ("2026-11-27T10:30", "2026-11-27T10:30:00Z"),
        ("2026-11-27T25:00Z", "2026-11-27T10:00:00Z"),
    ],
)
def test_a_time_hint_suggests_only_what_is_accepted(text: str, suggested: str) -> None:
    hint = _hint(text)
    assert suggested in hint
    examples = re.findall(r"e\.g\. (\S+)(?: or (\S+))?", hint)[0]
    for example in filter(None, examples):
        moment(example)  # every form the hint gives is accepted


def test_a_zone_without_a_time_of_day_says_so_and_never_gets_a_second_zone() -> None:
    assert "a time zone needs a time of day" in _hint("2026-11-27+00:00")
    assert "+00:00Z" not in _hint("2026-11-27+00:00")
    assert "a time zone needs a time of day" in _hint("2026-11-27Z")
    assert "not an ISO 8601 time: '2026-11-27x'" in _hint("2026-11-27x")
    assert "hour must be in 0..23" in _hint("2026-11-27T25:00Z")
    assert "month must be in 1..12" in _hint("2026-13-27Z")


def test_times_are_read_in_utc_and_the_earliest_is_accepted() -> None:
    assert moment("2026-11-27T10:00:00+02:00") == datetime(2026, 11, 27, 8, tzinfo=UTC)
    assert moment("20261127T1000Z") == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert moment("0001-01-01T00:00:00Z") == datetime(1, 1, 1, tzinfo=UTC)
    assert moment("0001-01-01T00:00:00+05:00") == datetime(1, 1, 1, tzinfo=UTC)


def test_an_actor_is_named_even_where_the_system_knows_no_login_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unknown() -> str:
        raise KeyError("getpwuid(): uid not found: 12345")

    monkeypatch.setattr(getpass, "getuser", unknown)
    assert login_name() == f"uid-{os.getuid()}"
