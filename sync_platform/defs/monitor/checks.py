"""Dagster's own freshness checks on every raw and canonical asset, one SLO per CRM schedule.

The checks show pass/fail history on each asset in the UI and run after every materialization
of their asset; ``freshness_checks_sensor`` re-runs them when an asset could have gone overdue
since, and the ``freshness_checks`` job runs them all on demand. (Dagster 1.13 also offers
``FreshnessPolicy`` on asset specs, but it is evaluated only by an opt-in instance daemon and
gives no hook for our alerts; the ``freshness_alerts`` sensor applies the same SLOs.)
"""

import warnings
from collections import defaultdict

import dagster as dg

from sync_platform.defs.monitor.targets import expectations


def build_freshness_checks() -> list[dg.AssetChecksDefinition]:
    by_slo = defaultdict(list)
    for e in expectations():
        by_slo[e.slo].append(dg.AssetKey(list(e.path)))
    checks = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)  # see the module docstring
        for slo, keys in sorted(by_slo.items()):
            checks += dg.build_last_update_freshness_checks(assets=keys, lower_bound_delta=slo)
    return checks


@dg.definitions
def defs() -> dg.Definitions:
    checks = build_freshness_checks()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        sensor = dg.build_sensor_for_freshness_checks(
            freshness_checks=checks,
            minimum_interval_seconds=60,
            default_status=dg.DefaultSensorStatus.RUNNING,
        )
    job = dg.define_asset_job(
        "freshness_checks",
        selection=dg.AssetSelection.checks(*checks),
        description="Evaluate every raw and canonical asset's freshness check now.",
    )
    return dg.Definitions(asset_checks=checks, sensors=[sensor], jobs=[job])
