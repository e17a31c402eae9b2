"""The orchestrator's exceptions: one root, converted at the boundary."""


class OrchestraError(Exception):
    """Root of every error this project raises on purpose."""


def error_of(exc: BaseException) -> str:
    """An error for a log line or a dead letter: its type always (a timeout's own text is
    empty), then its text."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


class SettingsError(OrchestraError):
    """A setting is missing or malformed."""


class EmbeddedStackError(OrchestraError):
    """The embedded broker or PostgreSQL could not start."""


class ConcurrentUpdate(OrchestraError):
    """A saga row changed under us (optimistic version check failed); retry the message."""


class SagaRefused(OrchestraError, ValueError):
    """An operator's action the saga's state does not allow (nothing is changed)."""


class SagaCodeFailed(OrchestraError):
    """A saga definition's own code raised on an operator's action (a bug, or data it cannot
    read)."""


class DefinitionError(OrchestraError):
    """A saga definition is malformed."""


class KafkaUnavailable(OrchestraError):
    """The Kafka bootstrap servers cannot be reached."""


class MessageTooLarge(OrchestraError):
    """The producer or the broker refuses a message for its size: sent again as it is, it
    would be refused again."""


class HttpUnavailable(OrchestraError):
    """An HTTP endpoint (the API, the metrics) could not listen: port taken, bad address."""
