"""The reconciliation report a person reads: counts per class, drift vs threshold, fields, ids, trend.

Two renderings of the same content: markdown for Dagster metadata, and a standalone HTML file
(chart inlined as a base64 PNG, so it opens offline and can be mailed). Only record ids and field
names appear, never field values: the report may travel further than the warehouse.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from sync_platform.core.settings import load_settings
from sync_platform.reconcile.anomalies import Anomaly
from sync_platform.reconcile.diff import ALL_CLASSES, CLASSES, Diff
from sync_platform.reconcile.history import CRM_TO_WAREHOUSE, SCHEMA, drift_row, drift_status, history_frame

_STATUS_COLOURS = {"ok": "#1a7f37", "warn": "#9a6700", "error": "#cf222e"}
_TREND_POINTS = 8


@dataclass
class EntityReport:
    """One comparison's findings. ``direction`` lets canonical -> CRM or cross-CRM checks sit beside
    CRM -> warehouse ones in the same report."""

    crm: str
    entity: str
    diff: Diff
    threshold: float
    top_fields: pl.DataFrame | None = None  # field, differing (``field_differences``)
    anomalies: list[Anomaly] = field(default_factory=list)
    direction: str = CRM_TO_WAREHOUSE
    sample_size: int = 10
    unreadable: list[str] = field(default_factory=list)  # listed ids the CRM sent unreadable: not compared

    @property
    def status(self) -> str:
        return drift_status(self.diff.drift_share, self.threshold)

    @property
    def label(self) -> str:
        suffix = "" if self.direction == CRM_TO_WAREHOUSE else f" ({self.direction})"
        return f"{self.crm}/{self.entity}{suffix}"


def _pct(share: float) -> str:
    return f"{share * 100:.2f} %"


def _series_label(crm: str, entity: str, direction: str) -> str:
    return f"{crm}/{entity}" + ("" if direction == CRM_TO_WAREHOUSE else f" ({direction})")


def _chart_data(
    entries: Sequence[EntityReport], history: pl.DataFrame | None, checked_at: datetime
) -> pl.DataFrame:
    """History plus the current checks (if not recorded yet), one row per check and series."""
    current = history_frame(
        [
            drift_row(e.diff, e.crm, e.entity, e.threshold, checked_at=checked_at, direction=e.direction)
            for e in entries
        ]
    )
    past = (
        history.select(list(SCHEMA)).cast(SCHEMA) if history is not None and not history.is_empty() else None
    )
    frame = current if past is None else pl.concat([past, current])
    return frame.unique(["checked_at", "crm", "entity", "direction"], keep="first", maintain_order=True).sort(
        "checked_at"
    )


def _trend(data: pl.DataFrame, entry: EntityReport) -> str:
    series = data.filter(
        (pl.col("crm") == entry.crm)
        & (pl.col("entity") == entry.entity)
        & (pl.col("direction") == entry.direction)
    )["drift_share"].tail(_TREND_POINTS)
    return " → ".join(_pct(v) for v in series.to_list())


def drift_chart_png(data: pl.DataFrame) -> bytes:
    """Drift % over time, one line per CRM/entity, each threshold as a dashed line of its colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    try:
        keys = data.select("crm", "entity", "direction").unique(maintain_order=True).rows()
        shared_threshold = data["threshold"].n_unique() == 1
        colours = plt.get_cmap("tab10")
        for i, (crm, entity, direction) in enumerate(keys):
            series = data.filter(
                (pl.col("crm") == crm) & (pl.col("entity") == entity) & (pl.col("direction") == direction)
            ).sort("checked_at")
            colour = colours(i % 10)
            times = [t.replace(tzinfo=None) for t in series["checked_at"].to_list()]  # UTC on the axis
            ax.plot(
                times,
                (series["drift_share"] * 100).to_list(),
                marker="o",
                markersize=4,
                linewidth=1.6,
                color=colour,
                label=_series_label(crm, entity, direction),
            )
            if not shared_threshold and series.height == 1:
                ax.axhline(series["threshold"][0] * 100, linestyle="--", linewidth=1, color=colour, alpha=0.7)
            elif not shared_threshold:
                ax.step(
                    times,
                    (series["threshold"] * 100).to_list(),
                    where="post",
                    linestyle="--",
                    linewidth=1,
                    color=colour,
                    alpha=0.7,
                )
        if shared_threshold:
            ax.axhline(
                data["threshold"][0] * 100,
                linestyle="--",
                linewidth=1.2,
                color="#cf222e",
                label=f"threshold {_pct(data['threshold'][0])}",
            )
        else:
            ax.plot([], [], linestyle="--", color="grey", label="threshold (per CRM/entity, its colour)")
        ax.set_ylabel("drift (% of source records)")
        ax.set_xlabel("checked at (UTC)")
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=100, decimals=2))
        ax.set_ylim(0, max(data["drift_share"].max() or 0, data["threshold"].max() or 0) * 100 * 1.15 or 1)
        first, last = data["checked_at"].min(), data["checked_at"].max()
        if first == last and isinstance(first, datetime):  # one check so far: a day around it, not years
            ax.set_xlim(
                first.replace(tzinfo=None) - timedelta(hours=12),
                first.replace(tzinfo=None) + timedelta(hours=12),
            )
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.grid(True, alpha=0.3)
        ax.set_title("Drift per CRM and entity vs threshold")
        ax.legend(loc="upper left", fontsize=8, frameon=False, ncol=2)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def report_markdown(
    entries: Sequence[EntityReport], history: pl.DataFrame | None = None, checked_at: datetime | None = None
) -> str:
    """The report as markdown (Dagster ``MetadataValue.md``)."""
    checked_at = checked_at or datetime.now(UTC)
    data = _chart_data(entries, history, checked_at)
    lines = [
        f"**Reconciliation** {checked_at:%Y-%m-%d %H:%M} UTC",
        "",
        "| CRM/entity | source | warehouse | "
        + " | ".join(CLASSES)
        + " | ahead | drift | threshold | status |",
        "|---|" + "---:|" * (len(CLASSES) + 5) + "---|",
    ]
    for e in entries:
        d = e.diff
        lines.append(
            f"| {e.label} | {d.source_records:,} | {d.warehouse_records:,} | "
            + " | ".join(f"{d.counts[c]:,}" for c in CLASSES)
            + f" | {d.ahead:,} | {_pct(d.drift_share)} | {_pct(e.threshold)} | **{e.status.upper()}** |"
        )
    for e in entries:
        details = []
        if e.top_fields is not None and not e.top_fields.is_empty():
            details.append(
                "top fields: " + ", ".join(f"`{f}` ({n})" for f, n in e.top_fields.head(5).iter_rows())
            )
        for cls, ids in e.diff.sample_ids(e.sample_size).items():
            details.append(f"{cls}: " + ", ".join(f"`{i}`" for i in ids))
        if e.unreadable:
            details.append(
                f"unreadable at the source, not compared ({len(e.unreadable)}): "
                + ", ".join(f"`{i}`" for i in e.unreadable[: e.sample_size])
            )
        for a in e.anomalies:
            details.append(
                f"⚠ **{a.name}** ({a.count}): {a.detail}; e.g. " + ", ".join(f"`{i}`" for i in a.example_ids)
            )
        trend = _trend(data, e)
        if trend:
            details.append(f"trend: {trend}")
        if details:
            lines += ["", f"**{e.label}**", *(f"- {d}" for d in details)]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2328;max-width:72rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{border:1px solid #d0d7de;padding:.3rem .6rem}
th{background:#f6f8fa;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.status{font-weight:600;color:#fff;border-radius:.3rem;padding:.1rem .5rem}code{font-size:.85em}
img{max-width:100%;border:1px solid #d0d7de}h2{margin-top:2rem}
"""


def report_html(
    entries: Sequence[EntityReport], history: pl.DataFrame | None = None, checked_at: datetime | None = None
) -> str:
    """The report as one standalone HTML page with the drift chart inlined."""
    checked_at = checked_at or datetime.now(UTC)
    data = _chart_data(entries, history, checked_at)
    esc = html.escape
    png = base64.b64encode(drift_chart_png(data)).decode("ascii")
    head = "".join(
        f"<th>{esc(h)}</th>"
        for h in ("CRM/entity", "source", "warehouse", *CLASSES, "ahead", "drift", "threshold", "status")
    )
    rows = []
    for e in entries:
        d = e.diff
        cells = [d.source_records, d.warehouse_records, *(d.counts[c] for c in CLASSES), d.ahead]
        rows.append(
            f"<tr><td>{esc(e.label)}</td>"
            + "".join(f'<td class="n">{v:,}</td>' for v in cells)
            + f'<td class="n">{_pct(d.drift_share)}</td><td class="n">{_pct(e.threshold)}</td>'
            f'<td><span class="status" style="background:{_STATUS_COLOURS[e.status]}">'
            f"{e.status.upper()}</span></td></tr>"
        )
    sections = []
    for e in entries:
        parts = [
            f"<h2>{esc(e.label)}</h2>",
            f"<p>trend (last {_TREND_POINTS} checks): {esc(_trend(data, e))}</p>",
        ]
        if e.top_fields is not None and not e.top_fields.is_empty():
            parts.append(
                "<h3>Top offending fields</h3><table><tr><th>field</th><th>records differing</th></tr>"
                + "".join(
                    f'<tr><td><code>{esc(f)}</code></td><td class="n">{n:,}</td></tr>'
                    for f, n in e.top_fields.head(10).iter_rows()
                )
                + "</table>"
            )
        samples = e.diff.sample_ids(e.sample_size)
        if samples:
            parts.append(
                "<h3>Sample ids</h3><table><tr><th>class</th><th>ids</th></tr>"
                + "".join(
                    f"<tr><td>{esc(c)}</td><td>{', '.join(f'<code>{esc(i)}</code>' for i in samples[c])}"
                    "</td></tr>"
                    for c in ALL_CLASSES
                    if c in samples
                )
                + "</table>"
            )
        if e.unreadable:
            parts.append(
                f"<h3>Unreadable at the source, not compared ({len(e.unreadable):,})</h3><p>"
                + ", ".join(f"<code>{esc(i)}</code>" for i in e.unreadable[: e.sample_size])
                + "</p>"
            )
        if e.anomalies:
            parts.append(
                "<h3>Cursor anomalies</h3><table><tr><th>finding</th><th>records</th><th>detail</th>"
                "<th>example ids</th></tr>"
                + "".join(
                    f'<tr><td>{esc(a.name)}</td><td class="n">{a.count:,}</td><td>{esc(a.detail)}</td>'
                    f"<td>{', '.join(f'<code>{esc(i)}</code>' for i in a.example_ids)}</td></tr>"
                    for a in e.anomalies
                )
                + "</table>"
            )
        sections.append("\n".join(parts))
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Reconciliation {checked_at:%Y-%m-%d %H:%M} UTC</title><style>{_CSS}</style></head><body>\n"
        f"<h1>Reconciliation report</h1><p>Checked {checked_at:%Y-%m-%d %H:%M:%S} UTC. "
        f"Drift = missing + extra + stale + diverged records, as a share of the records at the source; "
        f"above the threshold is an error, any drift below it a warning. <em>ahead</em> (cursor moved "
        f"backwards at the source) is reported, not counted.</p>\n"
        f"<table><tr>{head}</tr>{''.join(rows)}</table>\n"
        f'<img alt="drift per CRM and entity over time vs threshold" src="data:image/png;base64,{png}">\n'
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def write_report(
    entries: Sequence[EntityReport],
    history: pl.DataFrame | None = None,
    checked_at: datetime | None = None,
    reports_dir: Path | None = None,
) -> Path:
    """Write ``reconcile-<UTC timestamp>.html`` under ``data/reports/`` (or ``reports_dir``)."""
    checked_at = (checked_at or datetime.now(UTC)).astimezone(UTC)
    directory = reports_dir or load_settings().reports_dir
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"reconcile-{checked_at:%Y%m%dT%H%M%SZ}.html"
    path.write_text(report_html(entries, history, checked_at), encoding="utf-8")
    return path
