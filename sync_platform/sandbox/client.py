"""A small Python client for the sandbox's admin API (used by tests, the demo and benchmarks)."""

from __future__ import annotations

from typing import Any

import httpx


class SandboxAdminClient:
    def __init__(self, base_url: str, verify: str | bool = True, timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=f"{base_url}/__sandbox", verify=verify, timeout=timeout)

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        response = self._http.request(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox admin {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def info(self) -> dict:
        return self._call("GET", "/")

    def clock(self) -> dict:
        return self._call("GET", "/clock")

    def freeze(self, at: str | int | None = None) -> dict:
        return self._call("POST", "/clock", {"freeze": True, "at": at})

    def unfreeze(self) -> dict:
        return self._call("POST", "/clock", {"freeze": False})

    def advance(self, seconds: float) -> dict:
        return self._call("POST", "/clock", {"advance": seconds})

    def get(self, crm: str, obj: str, record_id: str) -> dict:
        return self._call("GET", f"/{crm}/{obj}/records/{record_id}")

    def create(
        self, crm: str, obj: str, records: list[dict], mode: str = "user", stamp: str | None = None
    ) -> list[str]:
        return self._call(
            "POST", f"/{crm}/{obj}/records", {"records": records, "mode": mode, "stamp": stamp}
        )["ids"]

    def update(
        self, crm: str, obj: str, ids: list[str], fields: dict, mode: str = "user", stamp: str | None = None
    ) -> dict:
        return self._call(
            "PATCH", f"/{crm}/{obj}/records", {"ids": ids, "fields": fields, "mode": mode, "stamp": stamp}
        )

    def delete(self, crm: str, obj: str, ids: list[str], mode: str = "user") -> dict:
        return self._call("POST", f"/{crm}/{obj}/delete", {"ids": ids, "mode": mode})

    def touch(self, crm: str, obj: str, count: int, mode: str = "user", **options: Any) -> dict:
        return self._call("POST", f"/{crm}/{obj}/touch", {"count": count, "mode": mode, **options})

    def set_change_tracking(self, obj: str, enabled: bool) -> dict:
        """Dynamics only: switch a table's change tracking (``odata.track-changes`` then fails)."""
        return self._call("PUT", f"/dynamics/{obj}/change_tracking", {"enabled": enabled})

    def add_automation(self, crm: str, obj: str, field: str, value: Any, times: int = 1) -> dict:
        """A trigger: each client write of ``obj`` through the CRM API sets ``field``, ``times`` times."""
        return self._call(
            "POST", f"/{crm}/{obj}/automations", {"field": field, "value": value, "times": times}
        )["automation"]

    def automations(self, crm: str, obj: str) -> list[dict]:
        return self._call("GET", f"/{crm}/{obj}/automations")["automations"]

    def clear_automations(self, crm: str, obj: str) -> int:
        return self._call("DELETE", f"/{crm}/{obj}/automations")["cleared"]

    def inject(self, kind: str, crm: str = "*", **options: Any) -> dict:
        return self._call("POST", "/faults", {"kind": kind, "crm": crm, **options})["fault"]

    def clear_faults(self) -> dict:
        return self._call("DELETE", "/faults")

    def tokens(self, crm: str, action: str) -> dict:
        return self._call("POST", f"/{crm}/tokens", {"action": action})

    def stats(self) -> dict:
        return self._call("GET", "/stats")

    def reset_stats(self) -> dict:
        return self._call("DELETE", "/stats")

    def requests(self, crm: str | None = None, endpoint: str | None = None, status: int | None = None) -> int:
        return sum(
            r["count"]
            for r in self.stats()["requests"]
            if (crm is None or r["crm"] == crm)
            and (endpoint is None or r["endpoint"] == endpoint)
            and (status is None or r["status"] == status)
        )

    def set_limits(self, **limits: Any) -> dict:
        return self._call("PUT", "/limits", limits)

    def alerts(self) -> list[dict]:
        """Alert webhook bodies the sandbox received (``POST /__sandbox/webhooks/alerts``), oldest first."""
        return self._call("GET", "/webhooks/alerts")["alerts"]

    def clear_alerts(self) -> int:
        return self._call("DELETE", "/webhooks/alerts")["cleared"]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SandboxAdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
