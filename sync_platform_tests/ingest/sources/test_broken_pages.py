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
