"""What a definition is refused for at import: names the tables cannot hold or the notice
uses, a step that nothing undoes with a refusable step after it, an outcome model that
cannot say FAILED, a participant no worker answers for."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from events.base import Command
from events.bench import BenchOrderPlaced, CreateDelivery, RefundPayment, ReservePayment
from orchestrator.engine.definition import NOTICE_STEP, Saga
from orchestrator.engine.machine import FAILED
from orchestrator.errors import DefinitionError
from orchestrator.sagas import ALL_SAGAS
from orchestrator.sagas.bench import BENCH_SAGA, PAYMENT, BenchOrder, outcome
from workers.bench.service import BENCH_WORKERS
from workers.registry import WORKERS, WorkerSpec

TOY: dict[str, Any] = {
    "state": BenchOrder,
    "trigger": BenchOrderPlaced,
    "inbound_topic": "toy.requested",
    "outcome_topic": "toy.status",
    "begin": lambda placed: BenchOrder(order_id=placed.order_id, amount_minor=1),
    "outcome": outcome,
    "outcome_key": lambda order: order.order_id,
    "success_status": "CONFIRMED",
    "failure_status": "CANCELLED",
}


def saga(name: str = "toy") -> Saga[BenchOrder, BenchOrderPlaced]:
    return Saga(name, **TOY)


def pay(o: BenchOrder) -> Command:
    return ReservePayment(order_id=o.order_id, amount_minor=o.amount_minor)


def refund(o: BenchOrder) -> Command:
    return RefundPayment(order_id=o.order_id)


def ship(o: BenchOrder) -> Command:
    return CreateDelivery(order_id=o.order_id)


@pytest.mark.parametrize("name", ["", "x" * 65, NOTICE_STEP])
def test_a_step_name_the_engine_cannot_keep_is_refused(name: str) -> None:
    with pytest.raises(DefinitionError):
        saga().step(name, PAYMENT, send=pay)


def test_a_saga_name_longer_than_its_column_is_refused() -> None:
    with pytest.raises(DefinitionError):
        saga("x" * 65)


def test_only_retriable_steps_may_follow_a_step_nothing_undoes() -> None:
    with pytest.raises(DefinitionError, match="which nothing undoes"):
        saga().step("ship", PAYMENT, send=ship).step("pay", PAYMENT, send=pay, compensate=refund)
    with pytest.raises(DefinitionError, match="undone by nothing"):
        saga().step("pay", PAYMENT, send=pay, compensate=refund).step(
            "ship", PAYMENT, send=ship, before="pay"
        )
    saga().step("ship", PAYMENT, send=ship).step("tell", PAYMENT, send=ship, retriable=True)


def test_only_a_step_that_reads_only_may_recheck_a_refusal() -> None:
    """A participant answers a step that acts again by what it recorded the first time."""
    with pytest.raises(DefinitionError, match="rechecks a refusal"):
        saga().step("pay", PAYMENT, send=pay, compensate=refund, recheck=["DECLINED"])
    (check,) = saga().step("check", PAYMENT, send=pay, reads_only=True, recheck=["NO"]).steps
    assert check.rechecked == frozenset({"NO"})


@pytest.mark.parametrize("definition", [*ALL_SAGAS, BENCH_SAGA], ids=lambda s: s.name)
def test_every_outcome_can_say_each_status_the_engine_ends_with(
    definition: Saga,  # type: ignore[type-arg]
) -> None:
    model = typing.get_type_hints(definition.outcome)["return"]
    annotation: Any = model.model_fields["status"].annotation
    status: TypeAdapter[Any] = TypeAdapter(annotation)
    for value in (definition.success_status, definition.failure_status, FAILED):
        try:
            status.validate_python(value)
        except ValidationError:
            pytest.fail(f"{model.__name__}.status cannot be {value}")


@pytest.mark.parametrize(
    ("definition", "workers"),
    [*((s, WORKERS) for s in ALL_SAGAS), (BENCH_SAGA, BENCH_WORKERS)],
    ids=lambda item: getattr(item, "name", ""),
)
def test_every_participant_is_a_worker_of_its_name_and_topic(
    definition: Saga,  # type: ignore[type-arg]
    workers: dict[str, WorkerSpec],
) -> None:
    """The orchestrator tells whether a participant took a command by the consumer group of
    the worker named as the participant: another name drops that wait without a word."""
    for participant in definition.participants:
        spec = workers.get(participant.name)
        assert spec is not None, f"no worker named {participant.name}"
        assert spec.topic == participant.topic


def test_steps_come_only_through_step() -> None:
    """Steps given whole would skip the checks and share slot 0: a saga would mistake one
    step's answer for another's."""
    with pytest.raises(TypeError):
        Saga("toy", **TOY, steps=())
