"""The canonical quality gate as an alert: a blocked canonical build stays an incident until one passes.

The canonical assets record the gate's verdict in their materialization metadata (``gate``,
``rejected_share``, ``threshold``, ``rule_counts``); the newest materialization per entity is the
current state, so a later passing build resolves the alert without anyone touching it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_platform.canonical.publish import BLAST_RADIUS_ALERT
from sync_platform.ops.alerts import Finding

SCOPE = "quality_gate:"
ALERT = BLAST_RADIUS_ALERT


def blast_radius_findings(latest: Mapping[tuple[str, ...], Mapping[str, Any]]) -> list[Finding]:
    """``latest``: newest materialization metadata (plain values) per canonical asset path."""
    findings = []
    for path, meta in sorted(latest.items()):
        gate = str(meta.get("gate", ""))
        if not gate.startswith("blocked") or "change impact" in gate:  # the asset alerts on impact itself
            continue
        asset = "/".join(path)
        share, threshold = float(meta.get("rejected_share", 0)), float(meta.get("threshold", 0))
        findings.append(
            Finding(
                key=f"{SCOPE}{asset}",
                severity="error",
                finding=ALERT,
                asset=asset,
                message=f"{asset}: {meta.get('rows_rejected', '?')} of {meta.get('rows_in', '?')} "
                f"rows rejected ({share:.1%} > {threshold:.1%}); "
                "the previous table was kept and downstream stopped",
                details={
                    "rejected_share": share,
                    "threshold": threshold,
                    "rule_counts": meta.get("rule_counts", {}),
                    "mapping_versions": meta.get("mapping_versions", {}),
                },
            )
        )
    return findings
