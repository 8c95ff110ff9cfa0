"""The in-process prediction quota: a sliding window over two minutes."""

import pytest

from schema.throttle import LocalRowCounter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _counter(limit: int, now: float = 600.0) -> tuple[LocalRowCounter, Clock]:
    clock = Clock(now)
    return LocalRowCounter(limit, clock), clock


def test_rows_fit_until_the_limit():
    counter, _ = _counter(10)

    assert counter.take("a", 6) is None
    assert counter.take("a", 4) is None
    wait = counter.take("a", 1)

    assert wait is not None
    assert 0 < wait <= 120


def test_refused_rows_are_not_counted():
    counter, _ = _counter(10)
    counter.take("a", 8)

    assert counter.take("a", 5) is not None
    assert counter.take("a", 2) is None


def test_callers_count_apart():
    counter, _ = _counter(5)
    counter.take("a", 5)

    assert counter.take("b", 5) is None
    assert counter.take("a", 1) is not None


def test_previous_minute_counts_by_share():
    counter, clock = _counter(100, now=600.0)
    counter.take("a", 100)

    clock.now = 600.0 + 60 + 15  # 45 s of the previous minute still count
    assert counter.take("a", 26) is not None  # 75 + 26 > 100
    assert counter.take("a", 25) is None  # 75 + 25 = 100


def test_wait_ends_when_the_rows_fit():
    counter, clock = _counter(100, now=600.0)
    counter.take("a", 100)
    clock.now = 660.0 + 15

    wait = counter.take("a", 50)
    assert wait is not None
    clock.now += wait
    assert counter.take("a", 50) is None
    # A little earlier they would not have fit.
    counter2, clock2 = _counter(100, now=600.0)
    counter2.take("a", 100)
    clock2.now = 675.0 + wait - 1
    assert counter2.take("a", 50) is not None


def test_batch_over_the_limit_never_fits():
    counter, _ = _counter(10)

    assert counter.take("a", 11) == pytest.approx(60)
    assert counter.take("a", 10) is None


def test_idle_callers_are_swept(monkeypatch):
    monkeypatch.setattr(LocalRowCounter, "SWEEP_SIZE", 3)
    counter, clock = _counter(10)
    for caller in ("a", "b", "c"):
        counter.take(caller, 1)
    clock.now += 180

    counter.take("d", 1)

    assert set(counter._windows) == {"d"}
