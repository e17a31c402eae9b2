"""A refusal's sentence explains its reason code; however long it grows, the reply is sent."""

from __future__ import annotations

from events.base import DETAIL_CHARS, StepFailed
from events.replies import REPLY_ADAPTER


def test_a_long_refusal_sentence_is_cut_not_refused() -> None:
    skus = ", ".join(f"{'S' * 120}-{i} (short by 1)" for i in range(40))
    refusal = StepFailed(reason="OUT_OF_STOCK", detail=f"not enough stock: {skus}")
    assert refusal.reason == "OUT_OF_STOCK"
    assert len(refusal.detail) == DETAIL_CHARS
    assert refusal.detail.startswith("not enough stock: SSS")
    assert refusal.detail.endswith("…")
    assert REPLY_ADAPTER.validate_json(refusal.to_bytes()) == refusal


def test_a_short_refusal_sentence_is_kept_whole() -> None:
    sentence = "x" * DETAIL_CHARS
    assert StepFailed(reason="R", detail=sentence).detail == sentence
