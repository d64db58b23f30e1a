"""How each CRM source is reached: the local sandbox, or dlt config/secrets for a real org.

With ``SYNC_PLATFORM_SANDBOX_URL`` set, all three sources talk to the sandbox with its
well-known credentials. Otherwise dlt resolves URLs and secrets from ``.dlt/`` files or env
vars (``SOURCES__SALESFORCE__INSTANCE_URL``, ``SOURCES__SALESFORCE__CLIENT_SECRET``,
``SOURCES__HUBSPOT__ACCESS_TOKEN``, ``SOURCES__DYNAMICS__API_URL``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sync_platform.core.config import CrmSyncConfig
from sync_platform.core.settings import load_settings
from sync_platform.ingest.sources.common import SyncReport
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy, RequestStats


def sandbox_url() -> str | None:
    return load_settings().sandbox_url


def _sandbox_kwargs(crm: str, base: str) -> dict[str, Any]:
    from sync_platform.sandbox.state import SandboxConfig

    sandbox = SandboxConfig()
    if crm == "salesforce":
        return {
            "instance_url": base,
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "ca_file": load_settings().sandbox_ca_file,
        }
    if crm == "hubspot":
        return {"host": base, "access_token": sandbox.hubspot_private_app_token}
    return {
        "api_url": f"{base}/api/data/v9.2",
        "token_url": f"{base}/{sandbox.dynamics_tenant}/oauth2/v2.0/token",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "scope": f"https://{sandbox.dynamics_org}.crm.dynamics.com/.default",
    }


def _policy(cfg: CrmSyncConfig) -> HttpPolicy:
    """The HTTP policy every request to this CRM follows: ingestion, listings and repairs alike."""
    return HttpPolicy(
        max_attempts=cfg.max_attempts,
        backoff_initial=cfg.backoff_initial_seconds,
        backoff_max=cfg.backoff_max_seconds,
        max_requests=cfg.requests_per_window,
        per_seconds=cfg.window_seconds,
        budget_reserve=cfg.budget_reserve,
    )


def build_source(crm: str, cfg: CrmSyncConfig, report: SyncReport | None = None, placeholder: bool = False):
    """A fresh dlt source for one CRM (a new object per run: dagster-dlt cannot reuse one)."""
    from sync_platform.ingest.sources.dynamics import dynamics_source
    from sync_platform.ingest.sources.hubspot import hubspot_source
    from sync_platform.ingest.sources.salesforce import salesforce_source

    base = "http://placeholder.invalid" if placeholder else sandbox_url()
    kwargs: dict[str, Any] = _sandbox_kwargs(crm, base) if base else {}
    common = {
        "policy": _policy(cfg),
        "report": report,
        "hard_delete": cfg.hard_delete,
        "look_back_seconds": cfg.look_back_seconds,
        "future_tolerance_seconds": cfg.future_tolerance_seconds,
    }
    pages = {"page_size": cfg.page_size} if cfg.page_size else {}
    if crm == "salesforce":
        return salesforce_source(**pages, **common, **kwargs)
    if crm == "hubspot":
        return hubspot_source(search_per_second=cfg.search_requests_per_second, **common, **kwargs)
    if crm == "dynamics":
        return dynamics_source(
            change_tracking=cfg.change_tracking,
            **pages,
            **common,
            **kwargs,
        )
    raise ValueError(f"unknown CRM {crm!r}")


def build_by_id_source(
    crm: str, cfg: CrmSyncConfig, ids: Mapping[str, Sequence[str]], report: SyncReport | None = None
):
    """A dlt source reading only the given records (``{table: [id, ...]}``) of one CRM.

    Same source name, tables, hints and merge keys as ``build_source``, so it loads into the
    same schema through the same pipeline; it has no incremental, so the saved cursors stay put.
    Ids the CRM no longer returns end up in ``report.resource(table).not_found``.
    """
    from sync_platform.ingest.sources.dynamics import dynamics_by_id_source
    from sync_platform.ingest.sources.hubspot import hubspot_by_id_source
    from sync_platform.ingest.sources.salesforce import salesforce_by_id_source

    base = sandbox_url()
    kwargs: dict[str, Any] = _sandbox_kwargs(crm, base) if base else {}
    common = {
        "ids": {table: list(values) for table, values in ids.items()},
        "policy": _policy(cfg),
        "report": report,
        "hard_delete": cfg.hard_delete,
    }
    pages = {"page_size": cfg.page_size} if cfg.page_size else {}
    if crm == "salesforce":
        return salesforce_by_id_source(**pages, **common, **kwargs)
    if crm == "hubspot":
        return hubspot_by_id_source(**common, **kwargs)
    if crm == "dynamics":
        return dynamics_by_id_source(**pages, **common, **kwargs)
    raise ValueError(f"unknown CRM {crm!r}")


def build_listing_source(
    crm: str, cfg: CrmSyncConfig, fields: dict[str, list[str]], report: SyncReport | None = None
):
    """A reconciliation listing of one CRM: ``fields`` maps table -> CRM field names to list."""
    from sync_platform.ingest.sources.dynamics.listing import dynamics_listing
    from sync_platform.ingest.sources.hubspot.listing import hubspot_listing
    from sync_platform.ingest.sources.salesforce.listing import salesforce_listing

    base = sandbox_url()
    kwargs: dict[str, Any] = _sandbox_kwargs(crm, base) if base else {}
    common = {"policy": _policy(cfg), "report": report, "fields": fields}
    if crm == "salesforce":
        return salesforce_listing(**common, **kwargs)
    if crm == "hubspot":
        return hubspot_listing(**common, **kwargs)
    if crm == "dynamics":
        return dynamics_listing(**common, **kwargs)
    raise ValueError(f"unknown CRM {crm!r}")


def listing_columns(crm: str, table: str, fields: Sequence[str]) -> tuple[str, str, dict[str, str]]:
    """(id column, cursor column, declared columns) of a listing of one CRM, in its own field names."""
    from sync_platform.ingest.sources.dynamics import listing as dynamics
    from sync_platform.ingest.sources.hubspot import listing as hubspot
    from sync_platform.ingest.sources.salesforce import listing as salesforce

    listings = {"salesforce": salesforce, "hubspot": hubspot, "dynamics": dynamics}
    if crm not in listings:
        raise ValueError(f"unknown CRM {crm!r}")
    return listings[crm].listing_columns(table, fields)


# the settings a CRM needs outside a sync run (metadata checks), by dlt config/secret key
_SETTINGS = {
    "salesforce": ("instance_url", "client_id", "client_secret"),
    "hubspot": ("access_token",),
    "dynamics": ("api_url", "token_url", "client_id", "client_secret"),
}


def crm_settings(crm: str) -> dict[str, Any] | None:
    """How to reach one CRM: the sandbox's settings, or what dlt resolves from ``sources.<crm>.*``
    config and secrets; None when the CRM is not configured."""
    base = sandbox_url()
    if base:
        return _sandbox_kwargs(crm, base)
    import dlt

    found: dict[str, Any] = {}
    for key in _SETTINGS[crm]:
        found[key] = dlt.secrets.get(f"sources.{crm}.{key}") or dlt.config.get(f"sources.{crm}.{key}")
    for optional in ("host", "token_url", "scope", "ca_file"):
        value = dlt.config.get(f"sources.{crm}.{optional}")
        if value and optional not in found:
            found[optional] = value
    return found if all(found[k] for k in _SETTINGS[crm]) else None


def crm_client(crm: str, cfg: CrmSyncConfig, stats: RequestStats | None = None) -> tuple[CrmHttpClient, str]:
    """(client, API base URL) of one CRM outside a sync run (write-back): the sources' own client
    factory, token provider and HTTP policy; ``stats`` collects its counters. Raises ``ValueError``
    when the CRM is not configured."""
    settings = crm_settings(crm)
    if settings is None:
        raise ValueError(f"{crm} is not configured: no sandbox URL and no sources.{crm}.* settings")
    report = SyncReport(crm, stats=stats) if stats is not None else SyncReport(crm)
    policy = _policy(cfg)
    if crm == "salesforce":
        from sync_platform.ingest.sources.salesforce.helpers import http_client as salesforce_client

        base = str(settings["instance_url"]).rstrip("/")
        client = salesforce_client(
            base,
            settings["client_id"],
            settings["client_secret"],
            settings.get("token_url"),
            settings.get("ca_file"),
            policy,
            report,
            None,
        )
        return client, base
    if crm == "hubspot":
        from sync_platform.ingest.sources.hubspot.helpers import http_clients

        base = str(settings.get("host") or "https://api.hubapi.com").rstrip("/")
        clients = http_clients(
            base,
            settings.get("access_token"),
            settings.get("client_id"),
            settings.get("client_secret"),
            settings.get("refresh_token"),
            None,
            cfg.search_requests_per_second,
            policy,
            report,
            None,
        )
        return clients.list, base
    if crm == "dynamics":
        from sync_platform.ingest.sources.dynamics.helpers import http_client as dynamics_client

        client = dynamics_client(
            settings["token_url"],
            settings["client_id"],
            settings["client_secret"],
            settings.get("scope"),
            policy,
            report,
            None,
        )
        return client, str(settings["api_url"]).rstrip("/")
    raise ValueError(f"unknown CRM {crm!r}")
