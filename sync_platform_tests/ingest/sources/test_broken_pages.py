"""A 200 whose body lacks the records is a broken page, not an empty last page.

Taken for an empty last page, it ended the read early and the run passed with records missing.
"""

from __future__ import annotations

import pytest

from sync_platform.core.errors import CrmRequestError, ErrorKind


class _Client:
    """Answers every GET with one body, as a CRM or a proxy in front of it might."""

    def __init__(self, body: object) -> None:
        self.body = body

    def get_json(self, url: str, **kwargs: object) -> object:
        return self.body


@pytest.mark.parametrize(
    "body", [{"totalSize": 3, "done": True}, {"records": None, "done": True}, ["not", "a", "page"]]
)
def test_a_salesforce_page_without_records_is_a_parse_failure(body):
    from sync_platform.ingest.sources.salesforce.helpers import query_pages

    with pytest.raises(CrmRequestError) as failed:
        list(query_pages(_Client(body), "https://org", "SELECT Id FROM Contact", 2000))
    assert failed.value.kind == ErrorKind.PARSE and "records" in str(failed.value)


def test_a_dataverse_page_without_value_is_a_parse_failure():
    from sync_platform.ingest.sources.dynamics.helpers import odata_pages

    with pytest.raises(CrmRequestError) as failed:
        list(odata_pages(_Client({"@odata.context": "x"}), "https://org/api/data/v9.2/contacts", {}, {}))
    assert failed.value.kind == ErrorKind.PARSE


def test_a_hubspot_list_page_without_results_is_a_parse_failure():
    from sync_platform.ingest.sources.hubspot.helpers import list_pages

    with pytest.raises(CrmRequestError) as failed:
        list(list_pages(_Client({"paging": {}}), "https://api.hubapi.com", "contacts", {}))
    assert failed.value.kind == ErrorKind.PARSE


def test_an_empty_page_is_still_an_empty_page():
    from sync_platform.ingest.sources.salesforce.helpers import query_pages

    pages = list(
        query_pages(_Client({"totalSize": 0, "done": True, "records": []}), "https://org", "q", 2000)
    )
    assert pages == [[]]


class _Pages:
    """Answers the first GET with a page that names the next one, and records what was asked."""

    def __init__(self, first: dict) -> None:
        self.first, self.asked = first, []

    def get_json(self, url: str, **kwargs: object) -> object:
        self.asked.append(url)
        return self.first if len(self.asked) == 1 else {"records": [], "value": [], "done": True}


@pytest.mark.parametrize(
    "link", ["@evil.example/steal", "https://evil.example/services/data/v59.0/query/01g-2000"]
)
def test_salesforce_never_follows_a_next_page_to_another_host(link):
    """nextRecordsUrl was appended to the instance URL as given: "@evil.example/" made it another host."""
    from sync_platform.ingest.sources.salesforce.helpers import query_pages

    client = _Pages({"records": [{"Id": "1"}], "done": False, "nextRecordsUrl": link})
    with pytest.raises(CrmRequestError, match="away from the configured host"):
        list(query_pages(client, "https://acme.my.salesforce.com", "SELECT Id FROM Contact", 2000))
    assert client.asked == ["https://acme.my.salesforce.com/services/data/v59.0/queryAll/"]


def test_salesforce_follows_its_own_next_page():
    from sync_platform.ingest.sources.salesforce.helpers import query_pages

    client = _Pages(
        {"records": [{"Id": "1"}], "done": False, "nextRecordsUrl": "/services/data/v59.0/query/01g-2000"}
    )
    list(query_pages(client, "https://acme.my.salesforce.com", "SELECT Id FROM Contact", 2000))
    assert client.asked[1] == "https://acme.my.salesforce.com/services/data/v59.0/query/01g-2000"


def test_dataverse_never_follows_a_next_link_to_another_host():
    from sync_platform.ingest.sources.dynamics.helpers import odata_pages

    url = "https://acme.crm.dynamics.com/api/data/v9.2/contacts"
    client = _Pages(
        {"value": [{"contactid": "x"}], "@odata.nextLink": "https://evil.example/api/data/v9.2/contacts"}
    )
    with pytest.raises(CrmRequestError, match="away from the configured host"):
        list(odata_pages(client, url, {}, {}))
    assert client.asked == [url]
