"""Salesforce objects the source reads: table name, sObject, and declared column types."""

from sync_platform.ingest.sources.arrow import BOOL, DATETIME, STRING

API_VERSION = "59.0"
PAGE_SIZE = 2000  # the REST query maximum
IDS_PER_QUERY = 200  # by-id reads: 200 quoted ids keep the query URL near 6 kB, well under ~16 kB
CURSOR = "SystemModstamp"  # moves on every change, unlike LastModifiedDate

_COMMON = {
    "Id": STRING,
    "OwnerId": STRING,
    "CreatedDate": DATETIME,
    "LastModifiedDate": DATETIME,
    "SystemModstamp": DATETIME,
    "IsDeleted": BOOL,
}

OBJECTS: dict[str, tuple[str, dict[str, str]]] = {
    "contacts": (
        "Contact",
        {
            **_COMMON,
            "FirstName": STRING,
            "LastName": STRING,
            "Email": STRING,
            "Phone": STRING,
            "Title": STRING,
            "AccountId": STRING,
            "LeadSource": STRING,
            "Customer_Status__c": STRING,
            "HasOptedOutOfEmail": BOOL,
        },
    ),
    "accounts": (
        "Account",
        {
            **_COMMON,
            "Name": STRING,
            "Website": STRING,
            "Industry": STRING,
            "Phone": STRING,
            "BillingCountry": STRING,
        },
    ),
    "cases": (
        "Case",
        {
            **_COMMON,
            "CaseNumber": STRING,
            "Subject": STRING,
            "Status": STRING,
            "Priority": STRING,
            "Origin": STRING,
            "ContactId": STRING,
            "AccountId": STRING,
            "IsClosed": BOOL,
            "ClosedDate": DATETIME,
        },
    ),
}
