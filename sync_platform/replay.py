"""Re-drive dead letters: failed requests by re-running the CRM's sync, failed records by id.

A request-level dead letter marks a run that stopped before loading: the cursor did not move,
so re-running the CRM's incremental sync fetches exactly what was missed. A record-level one
marks a record left out of an otherwise loaded page: the cursor moved past it, so it is
re-fetched by id (``repair.fetch_ids_into_warehouse``). Merge on the record id makes either
replay harmless to repeat; entries are marked replayed only when their data landed (or the
record is gone at the source).
"""

from __future__ import annotations

import uuid

from .dead_letters import DeadLetter, DeadLetterQueue
from .instance import ensure_dagster_home
from .settings import load_settings
from .sources.errors import CrmRequestError
from .warehouse import Warehouse


def replay_dead_letters(crm: str | None = None) -> dict[str, tuple[bool, int, str]]:
    """Per CRM (``<crm>`` for requests, ``<crm> records`` for records): (succeeded, how many, detail)."""
    warehouse = Warehouse.from_env()
    queue = DeadLetterQueue(warehouse)
    pending = queue.pending(crm)
    outcome: dict[str, tuple[bool, int, str]] = {}
    records: dict[str, list[DeadLetter]] = {}
    requests: dict[str, list[str]] = {}
    for letter in pending:
        if letter.is_record:
            records.setdefault(letter.crm, []).append(letter)
        else:
            requests.setdefault(letter.crm, []).append(letter.id)
    for name, letters in records.items():
        outcome[f"{name} records"] = _replay_records(queue, warehouse, name, letters)
    if requests:
        outcome.update(_replay_requests(queue, requests))
    return outcome


def _replay_records(queue: DeadLetterQueue, warehouse: Warehouse, crm: str,
                    letters: list[DeadLetter]) -> tuple[bool, int, str]:
    from .repair import fetch_ids_into_warehouse

    fetchable = [d for d in letters if not (d.record_id or "").startswith("unidentified:")]
    ids: dict[str, list[str]] = {}
    for letter in fetchable:
        ids.setdefault(letter.object, []).append(letter.record_id or "")
    run_id = f"replay-{uuid.uuid4()}"
    try:
        result = fetch_ids_into_warehouse(crm, ids, warehouse, run_id=run_id)
    except CrmRequestError as exc:
        return False, len(letters), str(exc)
    gone = {(t, i) for t, found in result.not_found.items() for i in found}
    still_bad = {(t, i) for t, bad in result.rejected.items() for i in bad}
    done = [d.id for d in fetchable if (d.object, d.record_id) not in still_bad]
    queue.mark_replayed(done, run_id)
    left = len(letters) - len(done)
    detail = f"{len(done) - len(gone)} landed, {len(gone)} gone at the source"
    if left:
        detail += f", {left} still not loadable (attempts counted)"
    return left == 0, len(letters), detail


def _replay_requests(queue: DeadLetterQueue, by_crm: dict[str, list[str]]) -> dict[str, tuple[bool, int, str]]:
    import dagster as dg

    from .definitions import defs

    outcome = {}
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
