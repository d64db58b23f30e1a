"""Dataverse entity sets the source reads: primary key and declared column types."""

from sync_platform.ingest.sources.arrow import BOOL, DATETIME, INT, STRING

PAGE_SIZE = 5000  # odata.maxpagesize maximum
CURSOR = "modifiedon"
NOT_TRACKED = "0x80072491"  # ChangeTrackingNotEnabledForEntity: the table's change tracking is off
IDS_PER_QUERY = 100  # by-id reads: 100 quoted GUIDs keep the query URL near 6 kB, well under ~16 kB

_COMMON = {
    "statecode": INT,
    "_ownerid_value": STRING,
    "createdon": DATETIME,
    "modifiedon": DATETIME,
    "versionnumber": INT,
}

OBJECTS: dict[str, tuple[str, str, dict[str, str]]] = {
    # table: (entity set, primary key, attributes)
    "contacts": (
        "contacts",
        "contactid",
        {
            "contactid": STRING,
            "firstname": STRING,
            "lastname": STRING,
            "fullname": STRING,
            "emailaddress1": STRING,
            "telephone1": STRING,
            "jobtitle": STRING,
            "_parentcustomerid_value": STRING,
            "donotemail": BOOL,
            **_COMMON,
        },
    ),
    "accounts": (
        "accounts",
        "accountid",
        {
            "accountid": STRING,
            "name": STRING,
            "accountnumber": STRING,
            "websiteurl": STRING,
            "telephone1": STRING,
            "address1_country": STRING,
            **_COMMON,
        },
    ),
    "incidents": (
        "incidents",
        "incidentid",
        {
            "incidentid": STRING,
            "title": STRING,
            "ticketnumber": STRING,
            "prioritycode": INT,
            "statuscode": INT,
            "_customerid_value": STRING,
            "_primarycontactid_value": STRING,
            "resolvedon": DATETIME,
            **_COMMON,
        },
    ),
}

# entity set -> the entity's logical name, which the metadata API (EntityDefinitions) is keyed by
LOGICAL_NAMES = {"contacts": "contact", "accounts": "account", "incidents": "incident"}
