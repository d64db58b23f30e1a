"""Sandbox figures: start-up time and pages/s served with 1,000,000 contacts per CRM.

    .venv/bin/python benchmarks/sandbox.py [--contacts 1000000] [--pages 20]

Pages are fetched sequentially by one client, as a sync would, with the sandbox in its own process.
"""

from __future__ import annotations

import argparse
import time

import requests
from _common import sandbox_process


def _timed_pages(fetch, pages: int) -> tuple[float, int]:
    started, records = time.perf_counter(), 0
    for _ in range(pages):
        n = fetch()
        if n is None:
            break
        records += n
    return time.perf_counter() - started, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()
    with sandbox_process(args.contacts) as (details, startup):
        base, creds = details["base_url"], details["credentials"]
        print(f"sandbox with {args.contacts:,} contacts per CRM: ready in {startup:.2f} s (target <= 30 s)")
        http = requests.Session()
        sf_token = http.post(
            creds["salesforce"]["token_url"],
            data={
                "grant_type": "client_credentials",
                "client_id": creds["salesforce"]["client_id"],
                "client_secret": creds["salesforce"]["client_secret"],
            },
        ).json()["access_token"]
        dy_token = http.post(
            creds["dynamics"]["token_url"],
            data={
                "grant_type": "client_credentials",
                "client_id": creds["dynamics"]["client_id"],
                "client_secret": creds["dynamics"]["client_secret"],
                "scope": creds["dynamics"]["scope"],
            },
        ).json()["access_token"]
        hs_auth = {"Authorization": f"Bearer {creds['hubspot']['private_app_token']}"}
        requests_put = http.put(
            f"{base}/__sandbox/limits", json={"hubspot_per_10s": 10**9, "hubspot_search_per_second": 10**9}
        )
        requests_put.raise_for_status()

        state: dict = {}

        def salesforce() -> int | None:
            if "sf" not in state:
                soql = (
                    "SELECT Id, FirstName, LastName, Email, Phone, AccountId, SystemModstamp FROM Contact "
                    "WHERE SystemModstamp >= 2024-01-01T00:00:00Z ORDER BY SystemModstamp, Id"
                )
                page = http.get(
                    f"{base}/services/data/v59.0/queryAll/",
                    params={"q": soql},
                    headers={"Authorization": f"Bearer {sf_token}"},
                ).json()
            else:
                page = http.get(
                    f"{base}{state['sf']}", headers={"Authorization": f"Bearer {sf_token}"}
                ).json()
            state["sf"] = page.get("nextRecordsUrl")
            return len(page["records"])

        def hubspot_list() -> int | None:
            params = {"limit": 100, "properties": "email,firstname,lastname,phone,lastmodifieddate"}
            if state.get("hs"):
                params["after"] = state["hs"]
            page = http.get(f"{base}/crm/v3/objects/contacts", params=params, headers=hs_auth).json()
            state["hs"] = (page.get("paging") or {}).get("next", {}).get("after")
            return len(page["results"])

        def hubspot_search() -> int | None:
            body = {
                "filterGroups": [
                    {
                        "filters": [
                            {"propertyName": "lastmodifieddate", "operator": "GTE", "value": "1704067200000"}
                        ]
                    }
                ],
                "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
                "properties": ["email", "firstname", "lastname"],
                "limit": 200,
                "after": state.get("hss", "0"),
            }
            page = http.post(f"{base}/crm/v3/objects/contacts/search", json=body, headers=hs_auth).json()
            state["hss"] = (page.get("paging") or {}).get("next", {}).get("after", "0")
            return len(page["results"])

        def dynamics() -> int | None:
            url = (
                state.get("dy")
                or f"{base}/api/data/v9.2/contacts?$select=contactid,firstname,lastname,"
                "emailaddress1,modifiedon"
            )
            page = http.get(
                url, headers={"Authorization": f"Bearer {dy_token}", "Prefer": "odata.maxpagesize=5000"}
            ).json()
            state["dy"] = page.get("@odata.nextLink")
            return len(page["value"])

        print(f"{'endpoint':<34} {'pages':>6} {'records':>9} {'pages/s':>8} {'records/s':>10}")
        for name, fetch, pages in [
            ("Salesforce queryAll (2,000/page)", salesforce, args.pages),
            ("HubSpot list (100/page)", hubspot_list, args.pages * 5),
            ("HubSpot search (200/page)", hubspot_search, args.pages * 2),
            ("Dynamics (5,000/page)", dynamics, max(4, args.pages // 2)),
        ]:
            elapsed, records = _timed_pages(fetch, pages)
            print(f"{name:<34} {pages:>6} {records:>9,} {pages / elapsed:>8.1f} {records / elapsed:>10,.0f}")


if __name__ == "__main__":
    main()
