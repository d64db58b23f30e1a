import pytest

from sync_platform.sandbox.clock import SandboxClock
from sync_platform.sandbox.faults import Fault, FaultInjector
from sync_platform.sandbox.limits import HubSpotLimits, LimitConfig, RollingWindow, SalesforceLimits


def test_frozen_clock_advances_only_when_told():
    clock = SandboxClock()
    t0 = clock.freeze(1_000.0)
    assert clock.now() == t0 == 1_000.0
    assert clock.advance(5) == 1_005.0
    clock.unfreeze()
    assert clock.now() >= 1_005.0


def test_rolling_window_refuses_then_frees_a_slot():
    clock = SandboxClock()
    clock.freeze(0.0)
    window = RollingWindow(3, 10.0, clock)
    assert [window.try_acquire()[0] for _ in range(4)] == [True, True, True, False]
    assert window.try_acquire()[2] == pytest.approx(10.0)
    clock.advance(10.0)
    assert window.try_acquire()[0]


def test_hubspot_headers_count_down_and_search_is_separate():
    clock = SandboxClock()
    clock.freeze(0.0)
    limits = HubSpotLimits(LimitConfig(hubspot_per_10s=2, hubspot_search_per_second=1), clock)
    first = limits.check(is_search=False)
    assert first.headers["X-HubSpot-RateLimit-Remaining"] == "1"
    assert limits.check(is_search=False).allowed
    refused = limits.check(is_search=False)
    assert not refused.allowed and refused.policy == "TEN_SECONDLY_ROLLING"
    assert limits.check(is_search=True).allowed and not limits.check(is_search=True).allowed


def test_salesforce_budget_counts_prior_usage():
    clock = SandboxClock()
    limits = SalesforceLimits(LimitConfig(salesforce_daily=10), clock)
    limits.configure(used=9)
    assert limits.check().headers["Sforce-Limit-Info"] == "api-usage=10/10"
    assert not limits.check().allowed


def test_faults_skip_count_and_expire():
    clock = SandboxClock()
    clock.freeze(0.0)
    faults = FaultInjector(clock)
    faults.add(Fault(kind="error", crm="hubspot", path="/crm/v3/objects/contacts", after=1, count=2))
    hits = [faults.take("hubspot", "GET", "/crm/v3/objects/contacts") is not None for _ in range(5)]
    assert hits == [False, True, True, False, False]
    assert faults.take("salesforce", "GET", "/crm/v3/objects/contacts") is None
    faults.add(Fault(kind="outage", seconds=30))
    assert faults.take("dynamics", "GET", "/api/data/v9.2/contacts").kind == "outage"
    clock.advance(30)
    assert faults.take("dynamics", "GET", "/api/data/v9.2/contacts") is None


def test_bad_fault_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultInjector(SandboxClock()).add(Fault(kind="gremlins"))


def test_corrupt_records_needs_a_field_and_counts_records_not_requests():
    injector = FaultInjector(SandboxClock())
    with pytest.raises(ValueError, match="field"):
        injector.add(Fault("corrupt_records"))
    fault = injector.add(Fault("corrupt_records", crm="hubspot", field="createdate", count=3))
    page = [{"createdate": "2025-01-01"}, {"other": 1}, {"createdate": "2025-01-02"}]
    assert injector.take("hubspot", "POST", "/search") is fault
    assert (
        injector.corrupt(fault, page) == 2 and page[0]["createdate"] == page[2]["createdate"] == "#corrupt#"
    )
    assert injector.take("hubspot", "POST", "/search") is fault, "one record left to corrupt"
    assert injector.corrupt(fault, [{"createdate": "x"}, {"createdate": "y"}]) == 1
    assert injector.take("hubspot", "POST", "/search") is None
