"""Read ahead: decode the next images in a background thread while the model runs on this batch.

OpenCV's image and video decoders and every runtime's inference release the GIL, so on a
multi-core device decoding the next images overlaps the model's work on the current ones
instead of adding to it (benchmarks/read_ahead.py measures what it saves).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

_POLL_S = 0.1
"""How often a producer blocked on a full queue checks whether the consumer has gone."""


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _End:
    pass


@dataclass(frozen=True)
class _Value(Generic[Item, Result]):
    item: Item
    result: Result


def read_ahead(items: Iterable[Item], read: Callable[[Item], Result], depth: int) -> Iterator[tuple[Item, Result]]:
    """(item, read(item)) for every item, in order, with up to `depth` of them read ahead.

    One background thread iterates `items` (so a video's frames are decoded there too) and calls
    `read`; depth 0 does both in the calling thread. An exception from either is raised here, at
    its turn, after the items before it. Closing the iterator early (break, Ctrl-C) stops the
    thread after at most the read in progress. `read` runs on the background thread: keep it free
    of process-wide state (warnings.catch_warnings, as detect's reader uses, records the warnings
    of both threads while it is active; only the image's own are kept there).
    """
    if depth <= 0:
        for item in items:
            yield item, read(item)
        return
    results: queue.Queue[_Value[Item, Result] | _Failed | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(value: _Value[Item, Result] | _Failed | _End) -> bool:
        """Put value in the queue unless the consumer has gone; whether it was put."""
        while not stop.is_set():
            try:
                results.put(value, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(_Value(item, read(item))):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            offer(_Failed(error))
            return
        offer(_End())

    thread = threading.Thread(target=produce, name="kpnet-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            value = results.get()
            if isinstance(value, _End):
                return
            if isinstance(value, _Failed):
                raise value.error
            yield value.item, value.result
    finally:
        stop.set()
        thread.join()
