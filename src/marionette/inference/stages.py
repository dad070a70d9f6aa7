"""Stages of a stream, each in a thread of its own, so that they overlap: while one frame is
rendered, the next is tracked and the one after decoded. The heavy parts of every stage
(PyAV, MediaPipe, OpenCV, torch) release the GIL, so threads share the cores.

    with Stages() as stages:
        decoded = stages.start(decode(source))    # runs in a new thread
        tracked = stages.start(track(decoded))    # another, reading the first's output
        for item in tracked:                      # here, in the caller's thread
            ...

Items pass through bounded queues (`depth` each, or a stage's own), so order is kept and memory
is bounded. An exception raised in a stage (even KeyboardInterrupt, as a webcam's capture may
raise) is re-raised where the next stage reads, after the items that came before it, and so on
to the caller. Leaving the `with` block (normally, by an exception or by the caller stopping
early) stops every thread, closes its stage and waits for it: no thread outlives the block.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()  # a stage's last entry: (_END, None) when it ran out, (_END, error) when it raised
_POLL = 0.05  # seconds between looks at the stop flag while waiting on a queue


class Stages:
    def __init__(self, depth: int = 2):
        self.depth = depth  # items each queue holds between two stages
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, stage: Generator[T, None, None], depth: int | None = None) -> Iterator[T]:
        """Run the generator `stage` in a new thread; iterate its items, in order, from the result,
        through a queue of `depth` items (None: the Stages' own)."""
        handoff: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(depth or self.depth)

        def work() -> None:
            try:
                for item in stage:
                    if not self._put(handoff, (item, None)):
                        return
                self._put(handoff, (_END, None))
            except BaseException as error:  # handed on: raised where the next stage reads
                self._put(handoff, (_END, error))
            finally:
                stage.close()

        thread = threading.Thread(target=work, name=f"marionette-{stage.__name__}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return self._take(handoff)

    def _put(self, handoff: queue.Queue, entry: tuple[object, BaseException | None]) -> bool:
        """Queue `entry` once there is room; False if the stages were stopped first."""
        while not self._stop.is_set():
            try:
                handoff.put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _take(self, handoff: queue.Queue) -> Iterator[T]:
        while not self._stop.is_set():
            try:
                item, error = handoff.get(timeout=_POLL)
            except queue.Empty:
                continue
            if error is not None:
                raise error
            if item is _END:
                return
            yield item

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
