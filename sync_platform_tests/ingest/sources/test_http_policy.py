import pytest

from sync_platform.ingest.sources.http import HttpPolicy, SlidingWindowLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_limiter_paces_evenly_and_never_exceeds_the_window():
    t = FakeTime()
    limiter = SlidingWindowLimiter(5, 1.0, headroom=1.0, clock=t.clock, sleep=t.sleep)
    sent = []
    for _ in range(21):
        limiter.acquire()
        sent.append(t.now)
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert all(g == pytest.approx(0.2) for g in gaps), "evenly spaced, not bursts"
    assert max(sum(1 for s in sent if start <= s < start + 1.0) for start in sent) <= 5


def test_headroom_keeps_the_pace_just_under_the_ceiling():
    t = FakeTime()
    limiter = SlidingWindowLimiter(100, 10.0, headroom=0.97, clock=t.clock, sleep=t.sleep)
    for _ in range(1001):
        limiter.acquire()
    rate = 1000 / t.now
    assert 9.6 < rate <= 9.71


def test_limiter_pause_holds_the_next_request():
    t = FakeTime()
    limiter = SlidingWindowLimiter(2, 10.0, clock=t.clock, sleep=t.sleep)
    limiter.pause(5.0)
    assert limiter.acquire() == pytest.approx(5.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_requests": 0},
        {"max_requests": 5, "per_seconds": 0},
        {"headroom": 0},
        {"headroom": 1.5},
    ],
)
def test_policy_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        HttpPolicy(**kwargs)


def test_the_sandbox_ca_is_trusted_even_when_requests_ca_bundle_is_set(tls_sandbox, monkeypatch):
    """requests lets REQUESTS_CA_BUNDLE override a session's verify; the policy passes it per request."""
    import certifi

    from sync_platform.ingest.sources.auth import OAuthToken
    from sync_platform.ingest.sources.http import CrmHttpClient

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    base = tls_sandbox.base_url
    auth = OAuthToken(
        "salesforce",
        f"{base}/services/oauth2/token",
        "sandbox-client",
        "sandbox-secret",
        verify=tls_sandbox.ca_file,
    )
    client = CrmHttpClient("salesforce", auth, HttpPolicy(max_attempts=1), verify=tls_sandbox.ca_file)
    page = client.get_json(
        f"{base}/services/data/v59.0/query/", params={"q": "SELECT Id FROM Contact LIMIT 3"}
    )
    assert len(page["records"]) == 3
