"""The saga state machine, driven by hand with a controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from events.base import Compensated, Reply, StepFailed
from events.billing import WalletOpened
from events.cards import (
    CardActivated,
    CardIssueRequested,
    CardReserved,
    CardStatusChanged,
    CardType,
)
from events.envelope import Envelope
from orchestrator import metrics
from orchestrator.engine.instance import SagaInstance, SagaStatus, SentCommand
from orchestrator.engine.machine import Decision, RetryPolicy, SagaMachine
from orchestrator.engine.waiting import Awaiting, Wait, Waiting, waits
from orchestrator.errors import DefinitionError
from orchestrator.sagas.card_issuance import CARD_ISSUANCE_SAGA

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(step_timeout_s=10, budget=3, backoff_s=1, backoff_max_s=4)


@pytest.fixture
def machine() -> SagaMachine:
    return SagaMachine(CARD_ISSUANCE_SAGA, POLICY)


def request(currency: str = "KZT") -> CardIssueRequested:
    return CardIssueRequested(
        request_id="r-1", user_id="u-1", card_type=CardType.VIRTUAL, currency=currency
    )


def reply_to(decision: Decision, reply: Reply) -> Envelope:
    command = decision.outgoing[-1].envelope
    return Envelope(
        type=reply.kind,
        causation_id=command.id,
        saga_id=command.saga_id,
        saga_type=command.saga_type,
        saga_step=command.saga_step,
    )


def answer(machine: SagaMachine, decision: Decision, reply: Reply, at: datetime = T0) -> Decision:
    return machine.on_reply(decision.instance, reply, reply_to(decision, reply), at)


def answered_each_time(machine: SagaMachine, decision: Decision, reply: Reply) -> Decision:
    """``reply`` to the step and to each time it is asked again, until it is not."""
    d = answer(machine, decision, reply)
    while d.instance.status is SagaStatus.RUNNING and not d.outgoing and d.instance.next_action_at:
        d = machine.on_due(d.instance, d.instance.next_action_at)
        d = answer(machine, d, reply, d.instance.updated_at)
    return d


def kinds(decision: Decision) -> list[str]:
    return [o.body.__class__.__name__ for o in decision.outgoing]


def outcome(decision: Decision) -> CardStatusChanged:
    body = decision.outgoing[-1].body
    assert isinstance(body, CardStatusChanged)
    return body


def started(machine: SagaMachine) -> Decision:
    return machine.start(request(), Envelope(type="cards.issue-requested.v1"), T0)


def test_start_sends_first_step_with_a_deadline(machine: SagaMachine) -> None:
    d = started(machine)
    assert kinds(d) == ["ReserveCard"]
    assert d.instance.status is SagaStatus.RUNNING
    assert d.instance.pending_command_id == d.outgoing[0].envelope.id
    assert d.instance.next_action_at == T0 + timedelta(seconds=10)
    assert d.outgoing[0].key == str(d.instance.id)


def test_happy_path_issues_the_card(machine: SagaMachine) -> None:
    d = started(machine)
    d = answer(machine, d, CardReserved(card_id="9002", masked_number="4400********1234"))
    assert kinds(d) == ["OpenCardWallet"]
    d = answer(machine, d, WalletOpened(wallet_id="W-1", balance=Decimal(0), currency="KZT"))
    assert kinds(d) == ["ActivateCard"]
    d = answer(machine, d, CardActivated(card_id="9002"))
    assert d.instance.status is SagaStatus.COMPLETED
    result = outcome(d)
    assert (result.status, result.card_id, result.balance) == ("ISSUED", "9002", Decimal(0))
    assert d.outgoing[-1].key == "r-1"
    assert d.instance.next_action_at is None


def test_every_message_names_the_message_it_answers_as_its_cause(machine: SagaMachine) -> None:
    inbound = Envelope(type="cards.issue-requested.v1", correlation_id="corr-1")
    d = machine.start(request(), inbound, T0)
    assert d.outgoing[0].envelope.causation_id == inbound.id
    for reply in (
        CardReserved(card_id="9002", masked_number="m"),
        WalletOpened(wallet_id="W-1", balance=Decimal(0), currency="KZT"),
        CardActivated(card_id="9002"),
    ):
        envelope = reply_to(d, reply)
        d = machine.on_reply(d.instance, reply, envelope, T0)
        (sent,) = d.outgoing
        assert sent.envelope.causation_id == envelope.id
        assert sent.envelope.correlation_id == "corr-1"
    assert d.instance.status is SagaStatus.COMPLETED


def test_refusal_compensates_finished_steps_in_reverse_order(machine: SagaMachine) -> None:
    d = started(machine)
    d = answer(machine, d, CardReserved(card_id="9002", masked_number="m"))
    d = answer(machine, d, WalletOpened(wallet_id="W-1", balance=Decimal(0), currency="KZT"))
    d = answer(machine, d, StepFailed(reason="CARD_RELEASED"))
    assert kinds(d) == ["CloseCardWallet"]
    assert d.instance.status is SagaStatus.COMPENSATING
    d = answer(machine, d, Compensated())
    assert kinds(d) == ["ReleaseCard"]
    d = answer(machine, d, Compensated())
    assert d.instance.status is SagaStatus.ABORTED
    assert (outcome(d).status, outcome(d).reason) == ("REJECTED", "CARD_RELEASED")


def test_refusal_at_first_step_ends_without_compensation(machine: SagaMachine) -> None:
    d = answer(machine, started(machine), StepFailed(reason="ACTIVE_CARD_EXISTS"))
    assert d.instance.status is SagaStatus.ABORTED
    assert kinds(d) == ["CardStatusChanged"]
    assert outcome(d).reason == "ACTIVE_CARD_EXISTS"


def test_duplicate_reply_is_ignored(machine: SagaMachine) -> None:
    first = started(machine)
    reply = CardReserved(card_id="9002", masked_number="m")
    envelope = reply_to(first, reply)
    second = machine.on_reply(first.instance, reply, envelope, T0)
    again = machine.on_reply(second.instance, reply, envelope, T0)
    assert again.instance == second.instance
    assert again.outgoing == []
    assert [h.event for h in again.history] == ["reply-ignored"]


def test_late_reply_after_timeout_is_ignored(machine: SagaMachine) -> None:
    d = started(machine)
    late = CardReserved(card_id="9002", masked_number="m")
    late_envelope = reply_to(d, late)
    timed_out = machine.on_due(d.instance, T0 + timedelta(seconds=11))
    assert kinds(timed_out) == ["ReleaseCard"]  # the timed-out step may have happened: undo it
    after = machine.on_reply(timed_out.instance, late, late_envelope, T0 + timedelta(seconds=12))
    assert after.instance == timed_out.instance
    assert after.outgoing == []


def test_a_compensation_answered_after_its_timeout_still_counts(machine: SagaMachine) -> None:
    """A participant slower than the step timeout: its answer to an earlier attempt settles
    the step, rather than every attempt timing out until the saga ends FAILED."""
    d = answer(machine, started(machine), CardReserved(card_id="9002", masked_number="m"))
    d = answer(machine, d, StepFailed(reason="UNSUPPORTED_CURRENCY"))
    assert kinds(d) == ["ReleaseCard"]
    to_first = reply_to(d, Compensated())
    backing_off = machine.on_due(d.instance, T0 + timedelta(seconds=11))
    assert backing_off.instance.pending_command_id is None
    resent = machine.on_due(backing_off.instance, backing_off.instance.next_action_at or T0)
    assert kinds(resent) == ["ReleaseCard"]
    for waiting in (backing_off, resent):
        undo = SentCommand("reserve-card", compensation=True)  # as the history has it
        settled = machine.on_reply(waiting.instance, Compensated(), to_first, T0, undo)
        assert (outcome(settled).status, outcome(settled).reason) == (
            "REJECTED",
            "UNSUPPORTED_CURRENCY",
        )
        assert "reply-ignored" not in [h.event for h in settled.history]


def _activation_sent_again(machine: SagaMachine) -> tuple[Decision, Envelope]:
    """The saga once ``activate-card`` timed out and went again, and the envelope of an
    answer to its first attempt."""
    d = _at_activation(machine)
    to_first = reply_to(d, CardActivated(card_id="9002"))
    now = T0 + timedelta(seconds=11)
    d = machine.on_due(d.instance, now)
    d = machine.on_due(d.instance, d.instance.next_action_at or now)
    assert kinds(d) == ["ActivateCard"]
    return d, to_first


ACTIVATION = SentCommand("activate-card", compensation=False)


def test_a_step_nothing_undoes_answered_after_its_timeout_moves_on(machine: SagaMachine) -> None:
    d, to_first = _activation_sent_again(machine)
    done = machine.on_reply(d.instance, CardActivated(card_id="9002"), to_first, T0, ACTIVATION)
    assert outcome(done).status == "ISSUED"


def test_an_answer_to_a_command_the_saga_never_sent_moves_nothing(machine: SagaMachine) -> None:
    """A forged reply naming the saga's step: its history has no such command."""
    d, to_first = _activation_sent_again(machine)
    forged = to_first.model_copy(update={"causation_id": "never-sent"})
    for answered in (None, SentCommand("activate-card", compensation=True)):
        moved = machine.on_reply(d.instance, CardActivated(card_id="9002"), forged, T0, answered)
        assert [h.event for h in moved.history] == ["reply-ignored"]
        assert moved.instance == d.instance


def test_an_earlier_attempt_refused_is_left_to_the_attempt_awaited(machine: SagaMachine) -> None:
    """A handler's error is not recorded: the next attempt runs the step afresh and may well
    do it. Rolling back on the first attempt's refusal would leave the card activated."""
    d, to_first = _activation_sent_again(machine)
    refused = machine.on_reply(
        d.instance, StepFailed(reason="PARTICIPANT_ERROR"), to_first, T0, ACTIVATION
    )
    assert [h.event for h in refused.history] == ["reply-ignored"]
    assert refused.instance == d.instance


def test_an_earlier_attempt_asking_for_another_is_left_to_the_attempt_awaited(
    machine: SagaMachine,
) -> None:
    d = started(machine)
    busy = StepFailed(reason="ACQUIRER_UNAVAILABLE", retryable=True)
    to_first = reply_to(d, busy)
    d = answer(machine, d, busy)
    d = machine.on_due(d.instance, d.instance.next_action_at or T0)
    assert kinds(d) == ["ReserveCard"]
    first = SentCommand("reserve-card", compensation=False)
    again = machine.on_reply(d.instance, busy, to_first, T0, first)  # the first answer, again
    assert [h.event for h in again.history] == ["reply-ignored"]
    assert again.instance == d.instance
    forward = machine.on_reply(d.instance, Compensated(), to_first, T0, first)
    assert [h.event for h in forward.history] == ["reply-ignored"]


def test_a_reply_to_the_command_awaited_naming_another_step_moves_nothing(
    machine: SagaMachine,
) -> None:
    """A buggy participant's, or a forged, answer: a wallet opened does not reserve a card."""
    d = started(machine)
    genuine = reply_to(d, CardReserved(card_id="9002", masked_number="m"))
    for envelope, reply, why in (
        (
            genuine.model_copy(update={"saga_step": "open-wallet"}),
            WalletOpened(wallet_id="W-1", balance=Decimal(0), currency="KZT"),
            "names card-issuance/open-wallet; the saga is at card-issuance/reserve-card",
        ),
        (
            genuine.model_copy(update={"saga_type": "registration"}),
            Compensated(),
            "names registration/reserve-card",
        ),
        (
            genuine.model_copy(update={"saga_step": None}),
            CardReserved(card_id="9002", masked_number="m"),
            "names card-issuance/None",
        ),
        (genuine, Compensated(), "compensates reserve-card, which the saga is running forward"),
    ):
        ignored = machine.on_reply(d.instance, reply, envelope, T0)
        assert [h.event for h in ignored.history] == ["reply-ignored"]
        assert why in (ignored.history[0].detail or "")
        assert ignored.instance == d.instance
    moved = machine.on_reply(
        d.instance, CardReserved(card_id="9002", masked_number="m"), genuine, T0
    )
    assert kinds(moved) == ["OpenCardWallet"]


def test_timeout_ends_rejected_with_reason_timeout(machine: SagaMachine) -> None:
    d = started(machine)
    d = machine.on_due(d.instance, T0 + timedelta(seconds=11))
    d = answer(machine, d, Compensated())
    assert (outcome(d).status, outcome(d).reason) == ("REJECTED", "TIMEOUT")


def test_compensation_is_retried_with_backoff_then_fails(machine: SagaMachine) -> None:
    d = started(machine)
    d = answer(machine, d, CardReserved(card_id="9002", masked_number="m"))
    d = answer(machine, d, StepFailed(reason="UNSUPPORTED_CURRENCY"))
    now = T0
    delays = []
    for _ in range(POLICY.budget):
        d = answer(machine, d, StepFailed(reason="DB_DOWN"), now)
        assert d.outgoing == []
        assert d.instance.next_action_at is not None
        delays.append(d.instance.next_action_at - now)
        now = d.instance.next_action_at
        d = machine.on_due(d.instance, now)
        assert kinds(d) == ["ReleaseCard"]
    assert delays == [timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=4)]
    d = answer(machine, d, StepFailed(reason="DB_DOWN"), now)
    assert d.instance.status is SagaStatus.FAILED
    assert (outcome(d).status, outcome(d).reason) == ("FAILED", "UNSUPPORTED_CURRENCY")


def test_retryable_failure_retries_then_times_out(machine: SagaMachine) -> None:
    d = started(machine)
    now = T0
    for _ in range(POLICY.budget):
        d = answer(machine, d, StepFailed(reason="ACQUIRER_UNAVAILABLE", retryable=True), now)
        assert d.instance.status is SagaStatus.RUNNING
        assert d.instance.next_action_at is not None
        now = d.instance.next_action_at
        d = machine.on_due(d.instance, now)
        assert kinds(d) == ["ReserveCard"]
    d = answer(machine, d, StepFailed(reason="ACQUIRER_UNAVAILABLE", retryable=True), now)
    assert kinds(d) == ["ReleaseCard"]
    assert d.instance.reason == "TIMEOUT"


def test_a_compensation_gets_the_whole_budget_whatever_its_forward_step_spent(
    machine: SagaMachine,
) -> None:
    d = answer(machine, started(machine), CardReserved(card_id="9002", masked_number="m"))
    now = T0
    for _ in range(POLICY.budget):
        d = answer(machine, d, StepFailed(reason="DB_DOWN", retryable=True), now)
        now = d.instance.next_action_at or now
        d = machine.on_due(d.instance, now)
    d = machine.on_due(d.instance, now + timedelta(seconds=11))
    assert kinds(d) == ["CloseCardWallet"]
    for _ in range(POLICY.budget):
        now = d.instance.next_action_at or now
        d = machine.on_due(d.instance, now)  # the compensation times out: retried
        assert d.instance.status is SagaStatus.COMPENSATING
        now = d.instance.next_action_at or now
        d = machine.on_due(d.instance, now)
        assert kinds(d) == ["CloseCardWallet"]
    d = answer(machine, d, Compensated(), now)
    d = answer(machine, d, Compensated(), now)
    assert (outcome(d).status, outcome(d).reason) == ("REJECTED", "TIMEOUT")


def _at_activation(machine: SagaMachine) -> Decision:
    d = answer(machine, started(machine), CardReserved(card_id="9002", masked_number="m"))
    d = answer(machine, d, WalletOpened(wallet_id="W-1", balance=Decimal(0), currency="KZT"))
    assert kinds(d) == ["ActivateCard"]
    return d


def test_a_step_nothing_undoes_is_sent_again_after_a_timeout_until_it_answers(
    machine: SagaMachine,
) -> None:
    """It may have run: compensating the steps before it would leave its effect behind."""
    d = _at_activation(machine)
    now = T0
    for _ in range(POLICY.budget * 3):
        now += timedelta(seconds=60)
        d = machine.on_due(d.instance, now)
        assert d.instance.status is SagaStatus.RUNNING
        assert d.outgoing == []
        now += timedelta(seconds=60)
        d = machine.on_due(d.instance, now)
        assert kinds(d) == ["ActivateCard"]
    d = answer(machine, d, CardActivated(card_id="9002"), now)
    assert outcome(d).status == "ISSUED"


def test_a_step_nothing_undoes_is_not_rolled_back_by_hand_while_it_may_run(
    machine: SagaMachine,
) -> None:
    d = _at_activation(machine)
    with pytest.raises(ValueError, match="waits on step activate-card, which may have run"):
        machine.compensate(d.instance, T0, actor="ops", why="too slow")


def test_a_step_nothing_undoes_answering_after_a_roll_back_is_flagged_for_an_operator(
    machine: SagaMachine,
) -> None:
    """An orchestrator of the release before gave such a step up on a timeout and rolled the
    saga back; the step ran anyway (a wallet credited after its charge was refunded)."""
    d = _at_activation(machine)
    late = CardActivated(card_id="9002")
    envelope = reply_to(d, late)
    rolled_back = d.instance.evolve(status=SagaStatus.ABORTED, pending_command_id=None)
    labels = {"saga_type": CARD_ISSUANCE_SAGA.name, "step": "activate-card"}
    before = metrics.REGISTRY.get_sample_value("orchestra_late_effects_total", labels) or 0.0

    flagged = machine.on_reply(rolled_back, late, envelope, T0)

    assert [h.event for h in flagged.history] == ["late-effect"]
    assert flagged.outgoing == []
    assert flagged.instance == rolled_back
    metrics.observe([flagged])
    assert metrics.REGISTRY.get_sample_value("orchestra_late_effects_total", labels) == before + 1
    duplicate = machine.on_reply(d.instance.evolve(status=SagaStatus.COMPLETED), late, envelope, T0)
    assert [h.event for h in duplicate.history] == ["reply-ignored"], "a finished saga: no alarm"


def test_a_wait_longer_than_a_float_doubles_is_still_the_longest_backoff() -> None:
    policy = RetryPolicy(backoff_s=0.5, backoff_max_s=30.0)
    assert policy.backoff(10_000) == timedelta(seconds=30)


def test_a_step_nothing_undoes_refused_after_timeouts_compensates(machine: SagaMachine) -> None:
    d = _at_activation(machine)
    now = T0 + timedelta(seconds=11)
    d = machine.on_due(d.instance, now)
    d = machine.on_due(d.instance, d.instance.next_action_at or now)
    d = answer(machine, d, StepFailed(reason="CARD_NOT_FOUND"), now)
    assert kinds(d) == ["CloseCardWallet"]


def test_terminal_saga_ignores_timers(machine: SagaMachine) -> None:
    d = answer(machine, started(machine), StepFailed(reason="ACTIVE_CARD_EXISTS"))
    again = machine.on_due(d.instance, T0 + timedelta(hours=1))
    assert again.outgoing == []


def test_manual_compensate_and_retry(machine: SagaMachine) -> None:
    d = answer(machine, started(machine), CardReserved(card_id="9002", masked_number="m"))
    d = machine.compensate(d.instance, T0, actor="ops", why="customer called")
    assert kinds(d) == ["CloseCardWallet"]
    assert any(h.actor == "ops" and h.detail == "customer called" for h in d.history)
    d = machine.retry_step(d.instance, T0, actor="ops", why="billing fixed")
    assert kinds(d) == ["CloseCardWallet"]
    d = answer(machine, d, Compensated())
    d = answer(machine, d, Compensated())
    assert outcome(d).reason == "MANUAL"


def _failed_count() -> float:
    labels = {"saga_type": CARD_ISSUANCE_SAGA.name, "outcome": "failed"}
    return metrics.REGISTRY.get_sample_value("orchestra_sagas_ended_total", labels) or 0.0


def test_a_failed_saga_retried_publishes_only_a_changed_ending(machine: SagaMachine) -> None:
    d = answer(machine, started(machine), CardReserved(card_id="9002", masked_number="m"))
    d = answer(machine, d, StepFailed(reason="UNSUPPORTED_CURRENCY"))
    now = T0
    for _ in range(POLICY.budget + 1):
        d = answer(machine, d, StepFailed(reason="DB_DOWN"), now)
        now = d.instance.next_action_at or now
        d = machine.on_due(d.instance, now) if d.instance.next_action_at else d
    assert outcome(d).status == "FAILED"
    for _ in range(2):  # retried while the participant is still down: failing again is silent
        d = machine.retry_step(d.instance, now, actor="ops", why="billing back?")
        assert kinds(d) == ["ReleaseCard"]
        for _ in range(POLICY.budget + 1):
            d = answer(machine, d, StepFailed(reason="DB_DOWN"), now)
            now = d.instance.next_action_at or now
            d = machine.on_due(d.instance, now) if d.instance.next_action_at else d
        assert d.instance.status is SagaStatus.FAILED
        assert d.outgoing == []
        assert [h.event for h in d.history][-1] == "failed-again"
        before = _failed_count()
        metrics.observe([d])
        assert _failed_count() == before + 1, "needs an operator again: counted again"
    d = machine.retry_step(d.instance, now, actor="ops", why="billing back")
    d = answer(machine, d, Compensated(), now)
    assert (outcome(d).status, outcome(d).reason) == ("REJECTED", "UNSUPPORTED_CURRENCY")


def _instance(d: Decision) -> SagaInstance:
    return d.instance


def test_history_records_every_command_and_reply(machine: SagaMachine) -> None:
    d = started(machine)
    events = [h.event for h in d.history]
    d = answer(machine, d, CardReserved(card_id="9002", masked_number="m"))
    events += [h.event for h in d.history]
    assert events == ["started", "command-sent", "reply-received", "step-completed", "command-sent"]


@pytest.mark.parametrize(
    ("stuck", "wait"),
    [
        (timedelta(seconds=30), timedelta(minutes=5)),
        (timedelta(hours=1), timedelta(hours=1)),
        (timedelta(days=3), timedelta(hours=6)),
    ],
)
def test_a_saga_whose_timer_raises_is_put_off_as_long_as_it_has_been_stuck(
    machine: SagaMachine, stuck: timedelta, wait: timedelta
) -> None:
    started = machine.start(request(), Envelope(type="cards.issue-requested.v1"), T0).instance
    now = T0 + stuck

    put_off = machine.put_off(started, now, "KeyError: 'x'")

    assert put_off.instance.next_action_at == now + wait
    assert put_off.instance.updated_at == started.updated_at, "its last progress, kept"
    assert put_off.instance.pending_command_id == started.pending_command_id
    assert [(h.event, h.detail) for h in put_off.history] == [("timer-failed", "KeyError: 'x'")]
    assert not put_off.outgoing


def test_a_saga_at_a_step_its_definition_no_longer_has_is_not_left_silently(
    machine: SagaMachine,
) -> None:
    """A release that removed a step: the timer raises, so the saga is put off with the
    error in its history (and logged), not quietly left without a timer."""
    started = machine.start(request(), Envelope(type="cards.issue-requested.v1"), T0).instance
    beyond = started.evolve(step_index=len(machine.definition.steps))
    with pytest.raises(DefinitionError, match="one removed from its definition"):
        machine.on_due(beyond, T0 + timedelta(minutes=1))


def test_a_step_whose_participant_has_not_taken_the_command_waits_then_times_out_from_then(
    machine: SagaMachine,
) -> None:
    """``engine.waiting``: late, the command not taken: the saga waits, noting it once; taken
    after the wait: the step's timeout counts from then; late again: it times out."""
    d = started(machine)
    late = T0 + timedelta(seconds=11)
    waiting = machine.wait_for_participant(d.instance, late, taken=False, noted=False)
    assert [h.event for h in waiting.history] == ["command-queued"]
    labels = {"saga_type": d.instance.saga_type, "step": waiting.history[0].step or ""}
    before = metrics.REGISTRY.get_sample_value("orchestra_steps_queued_total", labels) or 0.0
    metrics.observe([waiting])
    assert metrics.REGISTRY.get_sample_value("orchestra_steps_queued_total", labels) == before + 1
    assert waiting.outgoing == []
    assert waiting.instance.status is SagaStatus.RUNNING
    assert waiting.instance.pending_command_id == d.instance.pending_command_id
    assert waiting.instance.next_action_at == late + timedelta(seconds=5)

    later = late + timedelta(seconds=5)
    again = machine.wait_for_participant(waiting.instance, later, taken=False, noted=True)
    assert again.history == []
    taken = machine.wait_for_participant(again.instance, later, taken=True, noted=True)
    assert [h.event for h in taken.history] == ["command-taken"]
    assert taken.instance.next_action_at == later + timedelta(seconds=10)

    timed_out = machine.on_due(taken.instance, later + timedelta(seconds=11))
    assert "timeout" in [h.event for h in timed_out.history]


def test_which_late_steps_wait_for_their_participant() -> None:
    def late(queued: bool = False, taken: bool = False) -> Awaiting:
        return Awaiting(uuid4(), "cmd", "billing.commands", "billing", T0, queued, taken)

    fresh, still, reached, over, plain = (
        late(),
        late(queued=True),
        late(queued=True),
        late(queued=True, taken=True),
        late(),
    )
    found = waits([fresh, still, reached, over, plain], {fresh.saga_id, still.saga_id})
    assert found == {
        fresh.saga_id: Wait("cmd", taken=False, noted=False),
        still.saga_id: Wait("cmd", taken=False, noted=True),
        reached.saga_id: Wait("cmd", taken=True, noted=True),
    }


def test_a_timer_tick_times_out_only_the_late_steps_it_asked_the_broker_about() -> None:
    """A step late since the tick asked the broker (or not among those it asked) is left for
    the next tick, which asks, rather than timed out unasked; a due retry goes on."""
    asked, since = uuid4(), uuid4()
    waiting = Waiting(T0, {asked}, {})
    assert waiting.looked_at(_due(asked, "cmd-1"))
    assert not waiting.looked_at(_due(since, "cmd-2"))
    assert waiting.looked_at(_due(since, None))


def _due(saga_id: UUID, pending: str | None) -> SagaInstance:
    return SagaInstance(
        id=saga_id,
        saga_type="card-issuance",
        business_key="k",
        status=SagaStatus.RUNNING,
        step_index=0,
        compensating=False,
        pending_command_id=pending,
        attempt=0,
        next_action_at=T0,
        data={},
        reason=None,
        correlation_id=None,
        version=0,
        created_at=T0,
        updated_at=T0,
    )
