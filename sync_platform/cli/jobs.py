"""Run a job of the definitions in this process, on the user's Dagster instance.

The CLI's commands that need a whole Dagster run (the demo, re-running a CRM's sync for its
dead letters) come here; nothing below the CLI and ``defs/`` imports the definitions.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from sync_platform.core.instance import ensure_dagster_home
from sync_platform.core.settings import load_settings
from sync_platform.ingest.replay import SyncRerun


class JobFailed(RuntimeError):
    """A job run in-process did not succeed; the message is its first step failure."""


def run_job(
    job_name: str,
    *,
    raise_on_error: bool = True,
    tags: dict[str, str] | None = None,
    instance: dg.DagsterInstance | None = None,
    log_file: Path | None = None,
) -> dg.ExecuteInProcessResult:
    """Run ``job_name``; with ``log_file``, the console shows warnings only and the run's whole
    event log (debug included) is appended to the file instead."""
    from sync_platform.definitions import defs

    job = defs().resolve_job_def(job_name)
    instance = instance or dg.DagsterInstance.get()
    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}} if log_file else None
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags=tags, run_config=run_config)
    if log_file is not None:
        with log_file.open("a") as out:
            for entry in instance.all_logs(result.run_id):
                level = logging.getLevelName(entry.level)
                at = datetime.fromtimestamp(entry.timestamp, UTC).isoformat(timespec="milliseconds")
                out.write(f"{at} {level} {job_name} {entry.step_key or '-'} {entry.message}\n")
    if raise_on_error and not result.success:
        raise JobFailed(f"{job_name} failed: {first_failure(result)}")
    return result


def first_failure(result: dg.ExecuteInProcessResult) -> str:
    """The first line of the first step failure's message: what a person reads first."""
    failure = next((e for e in result.all_events if e.event_type_value == "STEP_FAILURE"), None)
    message = failure.step_failure_data.error.message.strip() if failure else ""
    return message.splitlines()[0] if message else "run failed"


def rerun_crm_sync(crm: str) -> SyncRerun:
    """Re-run ``<crm>_sync`` on the instance under ``DAGSTER_HOME`` (created if missing)."""
    ensure_dagster_home(load_settings().dagster_home)
    with dg.DagsterInstance.get() as instance:
        result = run_job(
            f"{crm}_sync", raise_on_error=False, tags={"dead_letter_replay": "true"}, instance=instance
        )
    return SyncRerun(result.success, result.run_id, "" if result.success else first_failure(result))
