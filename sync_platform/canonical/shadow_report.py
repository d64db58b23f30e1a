"""The diff report of a shadow build: per field, how many rows a new mapping version would change, and how.

A mapping being rolled out is built next to the live table (``canonical_shadow.<table>``), never
over it. This report is what a person reads before ``sync-platform mapping approve``: for each CRM
whose mapping changed, per field, the rows whose value the new version changes (among rows whose
raw data did not change), the null rate before and after, and for categorical fields the value
distribution before and after. HTML under ``data/reports/`` with the chart inlined (it opens
offline and can be mailed); personal values only ever appear as hashes.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path

from sync_platform.canonical.impact import FieldImpact, ImpactReport
from sync_platform.core.settings import load_settings

SHADOW = "canonical_shadow"


def _fields(impact: ImpactReport, crm: str) -> list[FieldImpact]:
    return [f for f in impact.fields if f.crm == crm]


def shadow_markdown(rollouts: dict[str, int], impact: ImpactReport, pending: list[str]) -> str:
    """The per-field summary, for the Dagster UI."""
    lines = []
    for crm, version in sorted(rollouts.items()):
        state = "awaits approval" if crm in pending else "live"
        lines += [
            f"**{crm} mapping v{version}** ({state})",
            "",
            "| field | rows changed by the mapping | null rate before → after |",
            "|---|---|---|",
        ]
        for f in _fields(impact, crm):
            lines.append(
                f"| {f.field} | {f.config_changed} of {f.compared} ({f.config_changed_share:.1%}) | "
                f"{f.null_before:.1%} → {f.null_after:.1%} |"
            )
        lines.append("")
    return "\n".join(lines)


def _chart_png(impact: ImpactReport, rollouts: dict[str, int]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crms = sorted(rollouts)
    fields = [f.field for f in _fields(impact, crms[0])] if crms else []
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(fields), 4) + 1.2))
    height = 0.8 / max(len(crms), 1)
    for i, crm in enumerate(crms):
        shares = {f.field: f.config_changed_share * 100 for f in _fields(impact, crm)}
        ax.barh(
            [n + i * height for n in range(len(fields))],
            [shares.get(name, 0) for name in fields],
            height=height,
            label=f"{crm} v{rollouts[crm]}",
        )
    ax.set_yticks([n + height * (len(crms) - 1) / 2 for n in range(len(fields))], fields)
    ax.invert_yaxis()
    ax.set_xlabel("% of rows whose value the new mapping changes (raw data unchanged)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=90)
    plt.close(fig)
    return out.getvalue()


def shadow_html(
    entity: str, table: str, rollouts: dict[str, int], impact: ImpactReport, pending: list[str]
) -> str:
    esc = html.escape
    png = base64.b64encode(_chart_png(impact, rollouts)).decode("ascii")
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>Shadow build of canonical.{esc(table)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.wait{color:#b00}</style>",
        f"<h1>Shadow build of canonical.{esc(table)} ({esc(entity)})</h1>",
        f"<p>Built {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC into <code>{SHADOW}.{esc(table)}</code>; "
        "the live table is untouched.</p>",
        f'<img alt="rows changed per field by the new mapping" src="data:image/png;base64,{png}">',
    ]
    for crm, version in sorted(rollouts.items()):
        waiting = crm in pending
        state = (
            f"<span class='wait'>awaits approval: <code>sync-platform mapping approve {esc(crm)} {version} "
            "--reason ...</code></span>"
            if waiting
            else "live (within the change-impact limits, or approved)"
        )
        parts += [
            f"<h2>{esc(crm)} mapping v{version}: {state}</h2>",
            "<table><tr><th>field</th><th>rows changed by the mapping</th><th>null rate before → after</th>"
            "<th>values before → after</th><th>examples (id: old → new)</th></tr>",
        ]
        for f in _fields(impact, crm):
            values = ""
            if f.before or f.after:
                values = "<br>".join(
                    f"{esc(str(v))}: {f.before.get(v, 0):.1%} → {f.after.get(v, 0):.1%}"
                    for v in sorted(set(f.before) | set(f.after))
                )
            examples = "<br>".join(
                f"{esc(str(e['source_id']))}: {esc(str(e['old']))} → {esc(str(e['new']))}" for e in f.examples
            )
            parts.append(
                f"<tr><td>{esc(f.field)}</td><td>{f.config_changed} of {f.compared} "
                f"({f.config_changed_share:.1%})</td><td>{f.null_before:.1%} → {f.null_after:.1%}</td>"
                f"<td>{values}</td><td>{examples}</td></tr>"
            )
        parts.append("</table>")
    breaches = [b for b in impact.breaches if b.crm in rollouts]
    if breaches:
        parts.append("<h2>Limits exceeded</h2><ul>")
        parts += [f"<li>{esc(b.message)}</li>" for b in breaches]
        parts.append("</ul>")
    return "\n".join(parts) + "\n"


def write_shadow_report(
    entity: str,
    table: str,
    rollouts: dict[str, int],
    impact: ImpactReport,
    pending: list[str],
    reports_dir: Path | None = None,
) -> Path:
    """``shadow-<table>-<crm>-v<version>[...]-<UTC timestamp>.html`` under ``data/reports/``."""
    directory = reports_dir or load_settings().reports_dir
    directory.mkdir(parents=True, exist_ok=True)
    versions = "-".join(f"{crm}-v{v}" for crm, v in sorted(rollouts.items()))
    path = directory / f"shadow-{table}-{versions}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.html"
    path.write_text(shadow_html(entity, table, rollouts, impact, pending))
    return path
