"""Bounded load on `w2sd serve` (loopback only, fixed request counts): no errors below
the queue bound, 429s above it, and memory that does not grow with traffic."""

from __future__ import annotations

import pytest

from w2sd_serve.loadtest import memory_growth, queue_bound


@pytest.mark.slow
def test_queue_bound(engine_dir):  # type: ignore[no-untyped-def]
    result = queue_bound(str(engine_dir))
    assert result["below"] == {"200": 12}
    assert set(result["above"]) == {"200", "429"} and result["above"]["429"] > 0


@pytest.mark.slow
def test_rss_after_500_requests_within_10_percent_of_after_50(engine_dir):  # type: ignore[no-untyped-def]
    result = memory_growth(str(engine_dir))
    assert result["growth"] <= 0.10, result
