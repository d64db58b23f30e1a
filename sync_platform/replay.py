"""Re-drive dead letters by re-running the sync of each affected CRM.

A dead letter marks a run that stopped before loading: the cursor did not move, so re-running
the CRM's incremental sync fetches exactly what was missed, and merge on the record id makes a
second replay harmless. Entries are marked replayed only when that run succeeds.
"""

from __future__ import annotations

from .dead_letters import DeadLetterQueue
from .instance import ensure_dagster_home
from .settings import load_settings
from .warehouse import Warehouse


def replay_dead_letters(crm: str | None = None) -> dict[str, tuple[bool, int, str]]:
    """Per CRM with pending dead letters: (succeeded, how many, run id or error)."""
    import dagster as dg

    from .definitions import defs

    queue = DeadLetterQueue(Warehouse.from_env())
    pending = queue.pending(crm)
    by_crm: dict[str, list[str]] = {}
    for letter in pending:
        by_crm.setdefault(letter.crm, []).append(letter.id)
    outcome = {}
    if not by_crm:
        return outcome
    ensure_dagster_home(load_settings().dagster_home)
    definitions = defs()
    with dg.DagsterInstance.get() as instance:
        for name, ids in by_crm.items():
            result = definitions.resolve_job_def(f"{name}_sync").execute_in_process(
                instance=instance, raise_on_error=False, tags={"dead_letter_replay": "true"})
            if result.success:
                queue.mark_replayed(ids, result.run_id)
                outcome[name] = (True, len(ids), f"run {result.run_id}")
            else:
                failure = next((e for e in result.all_events if e.event_type_value == "STEP_FAILURE"), None)
                message = failure.step_failure_data.error.message.strip() if failure else "run failed"
                outcome[name] = (False, len(ids), message.splitlines()[0] if message else "run failed")
    return outcome
