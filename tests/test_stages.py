"""Stages in threads (inference/stages.py): order kept, errors handed on in order, no thread left."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from marionette.inference.stages import Stages


def _running() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("marionette-")]


def numbers(count: int, closed: list[str], fail_at: int | None = None,
            error: type[BaseException] = ValueError) -> Iterator[int]:
    try:
        for i in range(count):
            if i == fail_at:
                raise error(f"bad item {i}")
            yield i
    finally:
        closed.append("numbers")


def slow_square(items: Iterator[int], closed: list[str]) -> Iterator[int]:
    try:
        for i in items:
            time.sleep(0.001 * (i % 3))  # uneven pace: order must not depend on it
            yield i * i
    finally:
        closed.append("slow_square")


def test_items_come_out_in_order_through_several_threads() -> None:
    closed: list[str] = []
    with Stages(depth=2) as stages:
        squares = stages.start(slow_square(stages.start(numbers(50, closed)), closed))
        assert list(squares) == [i * i for i in range(50)]
        assert len(_running()) <= 2  # one thread per stage
    assert sorted(closed) == ["numbers", "slow_square"] and not _running()


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_an_error_reaches_the_reader_after_the_items_before_it(error: type[BaseException]) -> None:
    closed: list[str] = []
    seen = []
    with pytest.raises(error, match="bad item 7"), Stages() as stages:
        for item in stages.start(slow_square(stages.start(numbers(20, closed, fail_at=7, error=error)), closed)):
            seen.append(item)
    assert seen == [i * i for i in range(7)] and not _running()


def test_stopping_early_stops_and_closes_every_stage() -> None:
    closed: list[str] = []
    with Stages(depth=1) as stages:
        for item in stages.start(slow_square(stages.start(numbers(10_000, closed)), closed)):
            if item == 16:
                break  # the upstream stages are blocked on full queues here
    assert sorted(closed) == ["numbers", "slow_square"] and not _running()
