import pytest

from sync_platform.sources.http import HttpPolicy, SlidingWindowLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_limiter_spaces_requests_to_stay_under_the_ceiling():
    t = FakeTime()
    limiter = SlidingWindowLimiter(3, 10.0, clock=t.clock, sleep=t.sleep)
    waits = [limiter.acquire() for _ in range(7)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(10.0) and t.now == pytest.approx(20.0)
    # never more than 3 in any 10-second window
    assert sum(waits) == pytest.approx(20.0)


def test_limiter_pause_pushes_the_window_forward():
    t = FakeTime()
    limiter = SlidingWindowLimiter(2, 10.0, clock=t.clock, sleep=t.sleep)
    limiter.pause(5.0)
    assert limiter.acquire() == pytest.approx(5.0)


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"max_requests": 0}, {"max_requests": 5, "per_seconds": 0}])
def test_policy_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        HttpPolicy(**kwargs)
