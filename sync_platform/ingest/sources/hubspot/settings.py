"""HubSpot objects the source reads: properties, cursor property and declared column types."""

from sync_platform.ingest.sources.arrow import BOOL, DATETIME, STRING

SEARCH_PAGE = 200  # search maximum
LIST_PAGE = 100  # list maximum
BATCH_READ = 100  # batch/read maximum inputs per call
SEARCH_CAP = 10_000  # search refuses to page past this many results: never truncate silently
ID = "id"  # every table's primary key: the record id, next to its properties

OBJECTS: dict[str, tuple[str, str, dict[str, str]]] = {
    # table: (object type, cursor property, properties and their types)
    "contacts": (
        "contacts",
        "lastmodifieddate",
        {
            "hs_object_id": STRING,
            "createdate": DATETIME,
            "lastmodifieddate": DATETIME,
            "email": STRING,
            "firstname": STRING,
            "lastname": STRING,
            "phone": STRING,
            "jobtitle": STRING,
            "company": STRING,
            "associatedcompanyid": STRING,
            "lifecyclestage": STRING,
            "hubspot_owner_id": STRING,
            "hs_email_optout": BOOL,
        },
    ),
    "companies": (
        "companies",
        "hs_lastmodifieddate",
        {
            "hs_object_id": STRING,
            "createdate": DATETIME,
            "hs_lastmodifieddate": DATETIME,
            "name": STRING,
            "domain": STRING,
            "industry": STRING,
            "phone": STRING,
            "country": STRING,
            "hubspot_owner_id": STRING,
        },
    ),
    "tickets": (
        "tickets",
        "hs_lastmodifieddate",
        {
            "hs_object_id": STRING,
            "createdate": DATETIME,
            "hs_lastmodifieddate": DATETIME,
            "subject": STRING,
            "content": STRING,
            "hs_pipeline": STRING,
            "hs_pipeline_stage": STRING,
            "hs_ticket_priority": STRING,
            "closed_date": DATETIME,
            "hs_contact_id": STRING,
            "hubspot_owner_id": STRING,
        },
    ),
}
