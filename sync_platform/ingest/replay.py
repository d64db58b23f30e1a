"""Re-drive dead letters: failed requests by re-running the CRM's sync, failed records by id.

A request-level dead letter marks a run that stopped before loading: the cursor did not move,
so re-running the CRM's incremental sync fetches exactly what was missed. A record-level one
marks a record left out of an otherwise loaded page: the cursor moved past it, so it is
re-fetched by id (``fetch_by_id.fetch_ids_into_warehouse``). Merge on the record id makes either
replay harmless to repeat; entries are marked replayed only when their data landed (or the
record is gone at the source).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sync_platform.core.config import CrmSyncConfig, SyncConfig
from sync_platform.core.errors import CrmRequestError
from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.fetch_by_id import fetch_ids_into_warehouse
from sync_platform.ops.dead_letters import DeadLetter, DeadLetterQueue


@dataclass(frozen=True)
class SyncRerun:
    """What re-running a CRM's incremental sync (a Dagster run, started by the caller) came to."""

    success: bool
    run_id: str
    error: str = ""


def replay_dead_letters(
    warehouse: Warehouse, config: SyncConfig, rerun_sync: Callable[[str], SyncRerun], crm: str | None = None
) -> dict[str, tuple[bool, int, str]]:
    """Per CRM (``<crm>`` for requests, ``<crm> records`` for records): (succeeded, how many, detail).

    ``rerun_sync(crm)`` re-runs the CRM's sync job: the CLI passes one that launches it in Dagster.
    """
    queue = DeadLetterQueue(warehouse)
    pending = queue.pending(crm)
    outcome: dict[str, tuple[bool, int, str]] = {}
    records: dict[str, list[DeadLetter]] = {}
    requests: dict[str, list[str]] = {}
    for letter in pending:
        if letter.is_outbound:  # a change a CRM refused: nothing to fetch, it waits for a person
            continue
        if letter.is_record:
            records.setdefault(letter.crm, []).append(letter)
        else:
            requests.setdefault(letter.crm, []).append(letter.id)
    for name, letters in records.items():
        outcome[f"{name} records"] = _replay_records(queue, warehouse, config.crm(name), name, letters)
    if requests:
        outcome.update(_replay_requests(queue, requests, rerun_sync))
    return outcome


def _replay_records(
    queue: DeadLetterQueue, warehouse: Warehouse, cfg: CrmSyncConfig, crm: str, letters: list[DeadLetter]
) -> tuple[bool, int, str]:
    fetchable = [d for d in letters if not (d.record_id or "").startswith("unidentified:")]
    ids: dict[str, list[str]] = {}
    for letter in fetchable:
        ids.setdefault(letter.object, []).append(letter.record_id or "")
    run_id = f"replay-{uuid.uuid4()}"
    try:
        result = fetch_ids_into_warehouse(crm, ids, warehouse, cfg, run_id=run_id)
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


def _replay_requests(
    queue: DeadLetterQueue, by_crm: dict[str, list[str]], rerun_sync: Callable[[str], SyncRerun]
) -> dict[str, tuple[bool, int, str]]:
    outcome = {}
    for name, ids in by_crm.items():
        rerun = rerun_sync(name)
        if rerun.success:
            queue.mark_replayed(ids, rerun.run_id)
            outcome[name] = (True, len(ids), f"run {rerun.run_id}")
        else:
            outcome[name] = (False, len(ids), rerun.error or "run failed")
    return outcome
