"""read_ahead: results in order, errors at their turn, and the reader thread gone when the consumer stops."""

from __future__ import annotations

import threading
import time

import pytest

from kpnet_edge.read_ahead import read_ahead


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kpnet-read-ahead"]


@pytest.mark.parametrize("depth", [0, 1, 3, 50])
def test_every_item_comes_back_once_in_order(depth):
    seen: list[int] = []

    def read(item: int) -> int:
        seen.append(item)
        return item * item

    assert list(read_ahead(range(20), read, depth)) == [(i, i * i) for i in range(20)]
    assert seen == list(range(20))
    assert not reader_threads()


@pytest.mark.parametrize("depth", [0, 2])
def test_a_read_error_is_raised_at_its_turn_after_the_items_before_it(depth):
    def read(item: int) -> int:
        if item == 3:
            raise ValueError("item 3 is damaged")
        return item

    results = read_ahead(range(10), read, depth)
    assert [next(results)[0] for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="item 3 is damaged"):
        next(results)
    assert not reader_threads()


def test_an_error_from_the_items_themselves_reaches_the_consumer():
    def items():
        yield 1
        raise OSError("the video stream broke")

    results = read_ahead(items(), lambda item: item, 4)
    assert next(results) == (1, 1)
    with pytest.raises(OSError, match="the video stream broke"):
        next(results)


def test_reads_run_ahead_of_the_consumer_but_no_further_than_depth():
    started: list[int] = []
    results = read_ahead(range(100), lambda item: started.append(item) or item, 4)
    assert next(results) == (0, 0)
    deadline = time.monotonic() + 5
    while len(started) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    # One handed out, four queued, one read waiting for room: never more.
    assert len(started) == 6
    results.close()
    assert not reader_threads()


def test_closing_early_stops_the_reader_thread():
    results = read_ahead(iter(range(10**9)), lambda item: item, 8)
    for _ in zip(range(5), results):
        pass
    results.close()
    assert not reader_threads()
