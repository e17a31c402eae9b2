"""The union of every reply the orchestrator can receive on ``orchestra.replies``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter

from events.base import Compensated, StepFailed
from events.bench import BenchStepDone
from events.billing import WalletOpened
from events.cards import CardActivated, CardReserved

AnyReply = Annotated[
    StepFailed | Compensated | CardReserved | CardActivated | WalletOpened | BenchStepDone,
    Field(discriminator="kind"),
]

REPLY_ADAPTER: TypeAdapter[AnyReply] = TypeAdapter(AnyReply)
