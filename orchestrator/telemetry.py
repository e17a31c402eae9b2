"""OpenTelemetry traces: one trace per saga, across every command and reply hop.

The trace id is the saga id and every span id is derived from a message id, so any
process (orchestrator or worker) can add its span to the saga's trace with no state
shared. Each message carries the W3C ``traceparent`` of the span that sent it, so tools
outside the project see the same trace. Spans are recorded only when an exporter is
configured (``ORCHESTRA_OTEL_EXPORTER``: console, otlp, or none).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from uuid import UUID

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from orchestrator.errors import SettingsError

_next_trace: ContextVar[int | None] = ContextVar("next_trace", default=None)
_next_span: ContextVar[int | None] = ContextVar("next_span", default=None)
_provider: TracerProvider | None = None


class DerivedIds(RandomIdGenerator):
    """Ids chosen by the caller (the saga's, the message's) when set, random otherwise."""

    def generate_span_id(self) -> int:
        return _next_span.get() or super().generate_span_id()

    def generate_trace_id(self) -> int:
        return _next_trace.get() or super().generate_trace_id()


def message_span_id(message_id: str) -> int:
    return int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:8], "big") or 1


def root_span_id(saga_id: UUID) -> int:
    return message_span_id(f"saga:{saga_id}")


def enable(exporter: str, service: str = "orchestra") -> None:
    """Start recording spans with the named exporter (once per process)."""
    if exporter == "none":
        return
    span_exporter: SpanExporter
    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        except ImportError:
            raise SettingsError(
                "ORCHESTRA_OTEL_EXPORTER=otlp needs the otlp extra: "
                "pip install 'orchestra-saga[otlp]'"
            ) from None
        span_exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_* variables configure it
    else:
        raise SettingsError(f"unknown OpenTelemetry exporter {exporter!r}: none, console, otlp")
    add_processor(BatchSpanProcessor(span_exporter), service)


def add_processor(processor: SpanProcessor, service: str = "orchestra") -> None:
    global _provider
    if _provider is None:
        _provider = TracerProvider(
            id_generator=DerivedIds(), resource=Resource.create({"service.name": service})
        )
    _provider.add_span_processor(processor)


def enabled() -> bool:
    """Whether spans are recorded; callers skip building them when not."""
    return _provider is not None


def record(
    name: str,
    saga_id: UUID,
    span_id: int,
    parent_span_id: int | None,
    start_ns: int,
    attributes: Mapping[str, str] | None = None,
) -> None:
    """One finished span of a saga's trace (nothing when tracing is off)."""
    if _provider is None:
        return
    tracer = _provider.get_tracer("orchestra")
    context = None
    if parent_span_id is not None:
        parent = SpanContext(
            trace_id=saga_id.int,
            span_id=parent_span_id,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        context = trace.set_span_in_context(NonRecordingSpan(parent))
    with _ids(saga_id.int, span_id):
        span = tracer.start_span(
            name, context=context, start_time=start_ns, attributes=dict(attributes or {})
        )
    span.end()


@contextmanager
def _ids(trace_id: int, span_id: int) -> Iterator[None]:
    trace_token = _next_trace.set(trace_id)
    span_token = _next_span.set(span_id)
    try:
        yield
    finally:
        _next_trace.reset(trace_token)
        _next_span.reset(span_token)


def flush() -> None:
    if _provider is not None:
        _provider.force_flush()
