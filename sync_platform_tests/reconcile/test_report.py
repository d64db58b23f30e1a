"""The report: counts, status, chart image, samples and anomalies; ids only, never field values."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import polars as pl

from sync_platform.reconcile import classify, content_hash, field_differences
from sync_platform.reconcile.anomalies import cursor_anomalies
from sync_platform.reconcile.history import drift_row, history_frame
from sync_platform.reconcile.report import EntityReport, report_html, report_markdown, write_report
from sync_platform_tests.reconcile.conftest import BASE, seeded_pair

NOW = BASE + timedelta(days=7)


def _entries() -> list[EntityReport]:
    source, warehouse, _ = seeded_pair(n=1000)
    drifted = classify(source, warehouse)
    # the fields behind the diff carry personal data: it must not reach the report
    rows = pl.DataFrame({"id": ["003000008"], "Email": ["jane.doe@example.com"], "Phone": ["+4930123456"]})
    theirs = pl.DataFrame({"id": ["003000008"], "Email": ["old.jane@example.com"], "Phone": ["+4930123456"]})
    assert content_hash(rows, ["Email"])[0] != content_hash(theirs, ["Email"])[0]
    top = field_differences(rows, theirs, ["Email", "Phone"])
    return [
        EntityReport("salesforce", "contacts", drifted, 0.005, top, cursor_anomalies(drifted, source, NOW)),
        EntityReport("hubspot", "contacts", classify(source, source), 0.005),
    ]


def _history() -> pl.DataFrame:
    source, _, _ = seeded_pair(n=1000)
    clean = classify(source, source)
    return history_frame(
        [
            drift_row(clean, crm, "contacts", 0.005, checked_at=BASE + timedelta(days=d))
            for d in range(3)
            for crm in ("salesforce", "hubspot")
        ]
    )


def test_html_has_the_chart_the_counts_and_the_findings():
    page = report_html(_entries(), _history(), NOW)
    image = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert image and base64.b64decode(image.group(1)).startswith(b"\x89PNG\r\n\x1a\n")
    assert len(image.group(1)) > 10_000  # a real chart, not an empty canvas
    row = re.search(r"<tr><td>salesforce/contacts</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r">([^<>]+)</", row)
    assert cells == ["1,000", "1,001", "3", "4", "5", "6", "2", "1.80 %", "0.50 %", "ERROR"]
    assert "OK</span>" in page  # hubspot
    assert "<code>Email</code>" in page and "content_changed_cursor_unchanged" in page
    assert "<code>003000008</code>" in page  # a sample diverged id
    assert "0.00 % → 0.00 % → 0.00 % → 1.80 %" in page  # trend: three recorded checks, then this one
    assert "jane" not in page and "+4930123456" not in page and "example.com" not in page


def test_markdown_for_dagster_metadata():
    text = report_markdown(_entries(), _history(), NOW)
    assert "| salesforce/contacts | 1,000 | 1,001 | 3 | 4 | 5 | 6 | 2 | 1.80 % | 0.50 % | **ERROR** |" in text
    assert "| hubspot/contacts | 1,000 | 1,000 | 0 | 0 | 0 | 0 | 0 | 0.00 % | 0.50 % | **OK** |" in text
    assert "top fields: `Email` (1)" in text and "cursor_moved_backwards" in text
    assert "jane" not in text


def test_ids_are_escaped_and_the_file_lands_in_the_reports_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    hostile = pl.DataFrame(
        {"id": ["<script>x</script>"], "cursor": [BASE], "content_hash": pl.Series([1], dtype=pl.UInt64)}
    )
    entry = EntityReport("dynamics", "contacts", classify(hostile, hostile.clear()), 0.005)
    path = write_report([entry], None, NOW)
    assert path == tmp_path / "data" / "reports" / f"reconcile-{NOW:%Y%m%dT%H%M%SZ}.html"
    page = path.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'src="data:image/png;base64,' in page
