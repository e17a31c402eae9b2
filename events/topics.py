"""Every topic name the project uses, in one place."""

from __future__ import annotations

from typing import Final

DLQ_SUFFIX: Final = ".dlq"

# Upstream contract (CONTRACT.md): inbound requests and their outcome topics.
CARDS_ISSUE_REQUESTED: Final = "cards.issue-requested"
CARDS_STATUS: Final = "cards.status"

# Internal: commands to each participant, replies to the orchestrator.
CARD_ISSUANCE_COMMANDS: Final = "card-issuance.commands"
BILLING_COMMANDS: Final = "billing.commands"
SAGA_REPLIES: Final = "orchestra.replies"


def dlq(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX
