"""Object metadata for the emulated CRMs: fields, types, id formats and cursor fields.

One description per object serves Salesforce ``describe``, HubSpot ``properties``, write
validation and timestamp formatting, so the dialects never disagree about a field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# field types shared by the three dialects
ID, STRING, EMAIL, PHONE, DATETIME, BOOLEAN, INT, PICKLIST, REFERENCE, URL, TEXT = (
    "id",
    "string",
    "email",
    "phone",
    "datetime",
    "boolean",
    "int",
    "picklist",
    "reference",
    "url",
    "textarea",
)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str = STRING
    required: bool = False
    updateable: bool = True
    label: str = ""
    picklist: tuple[str, ...] = ()
    reference_to: str | None = None
    external_id: bool = False

    @property
    def display_label(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class ObjectSpec:
    crm: str
    name: str
    label: str
    id_field: str
    system_stamp: str  # bumps on every change (the reliable cursor)
    created_field: str
    fields: tuple[FieldSpec, ...]
    format_id: Callable[[int], str]
    parse_id: Callable[[str], int | None]
    user_stamp: str | None = None  # bumps on user changes only (Salesforce LastModifiedDate)
    key_prefix: str = ""
    by_name: dict[str, FieldSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({f.name: f for f in self.fields})

    def field(self, name: str) -> FieldSpec | None:
        return self.by_name.get(name)

    @property
    def datetime_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.type == DATETIME)

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)


# ---------------------------------------------------------------- id formats
def _salesforce_ids(prefix: str) -> tuple[Callable[[int], str], Callable[[str], int | None]]:
    """18-character ids whose lexical order is creation order, as with real Salesforce ids."""

    def fmt(i: int) -> str:
        return f"{prefix}Sb{i:010d}AAA"

    def parse(value: str) -> int | None:
        if len(value) == 15:
            value = value + "AAA"
        if len(value) != 18 or not value.startswith(prefix + "Sb") or not value[5:15].isdigit():
            return None
        return int(value[5:15])

    return fmt, parse


def _hubspot_ids() -> tuple[Callable[[int], str], Callable[[str], int | None]]:
    def fmt(i: int) -> str:
        return str(i + 1)

    def parse(value: str) -> int | None:
        return int(value) - 1 if value.isdigit() and int(value) > 0 else None

    return fmt, parse


def _dynamics_ids(entity_code: int) -> tuple[Callable[[int], str], Callable[[str], int | None]]:
    """GUIDs whose first group is the record's index, so GUID order is creation order."""
    suffix = f"-{entity_code:04x}-4000-8000-5a4e0b0c5d1e"

    def fmt(i: int) -> str:
        return f"{i:08x}{suffix}"

    def parse(value: str) -> int | None:
        value = value.strip("{}").lower()
        if len(value) != 36 or not value.endswith(suffix):
            return None
        try:
            return int(value[:8], 16)
        except ValueError:
            return None

    return fmt, parse


LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
SF_LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
SF_CUSTOMER_STATUS = ("Prospect", "Active", "Churned", "Former")
SF_CASE_STATUS = ("New", "Working", "Escalated", "Closed")
SF_CASE_PRIORITY = ("Low", "Medium", "High")
SF_CASE_ORIGIN = ("Email", "Phone", "Web")
HS_TICKET_STAGES = ("1", "2", "3", "4")  # New, Waiting on contact, Waiting on us, Closed
HS_TICKET_PRIORITY = ("LOW", "MEDIUM", "HIGH")
INDUSTRIES = ("Technology", "Healthcare", "Finance", "Retail", "Manufacturing", "Education", "Energy")


def _sf_common(prefix_fields: tuple[FieldSpec, ...]) -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("Id", ID, updateable=False, label="Record ID"),
        *prefix_fields,
        FieldSpec("OwnerId", REFERENCE, reference_to="User", label="Owner ID"),
        FieldSpec("CreatedDate", DATETIME, updateable=False, label="Created Date"),
        FieldSpec("LastModifiedDate", DATETIME, updateable=False, label="Last Modified Date"),
        FieldSpec("SystemModstamp", DATETIME, updateable=False, label="System Modstamp"),
        FieldSpec("IsDeleted", BOOLEAN, updateable=False, label="Deleted"),
    )


def _salesforce() -> dict[str, ObjectSpec]:
    objs = {}
    fmt, parse = _salesforce_ids("003")
    objs["Contact"] = ObjectSpec(
        crm="salesforce",
        name="Contact",
        label="Contact",
        id_field="Id",
        system_stamp="SystemModstamp",
        user_stamp="LastModifiedDate",
        created_field="CreatedDate",
        format_id=fmt,
        parse_id=parse,
        key_prefix="003",
        fields=_sf_common(
            (
                FieldSpec("FirstName", label="First Name"),
                FieldSpec("LastName", required=True, label="Last Name"),
                FieldSpec("Email", EMAIL),
                FieldSpec("Phone", PHONE, label="Business Phone"),
                FieldSpec("Title"),
                FieldSpec("AccountId", REFERENCE, reference_to="Account", label="Account ID"),
                FieldSpec("LeadSource", PICKLIST, picklist=SF_LEAD_SOURCES, label="Lead Source"),
                FieldSpec(
                    "Customer_Status__c", PICKLIST, picklist=SF_CUSTOMER_STATUS, label="Customer Status"
                ),
                FieldSpec("HasOptedOutOfEmail", BOOLEAN, label="Email Opt Out"),
                FieldSpec("External_Id__c", STRING, external_id=True, label="External ID"),
            )
        ),
    )
    fmt, parse = _salesforce_ids("001")
    objs["Account"] = ObjectSpec(
        crm="salesforce",
        name="Account",
        label="Account",
        id_field="Id",
        system_stamp="SystemModstamp",
        user_stamp="LastModifiedDate",
        created_field="CreatedDate",
        format_id=fmt,
        parse_id=parse,
        key_prefix="001",
        fields=_sf_common(
            (
                FieldSpec("Name", required=True, label="Account Name"),
                FieldSpec("Website", URL),
                FieldSpec("Industry", PICKLIST, picklist=INDUSTRIES),
                FieldSpec("Phone", PHONE),
                FieldSpec("BillingCountry", label="Billing Country"),
                FieldSpec("External_Id__c", STRING, external_id=True, label="External ID"),
            )
        ),
    )
    fmt, parse = _salesforce_ids("500")
    objs["Case"] = ObjectSpec(
        crm="salesforce",
        name="Case",
        label="Case",
        id_field="Id",
        system_stamp="SystemModstamp",
        user_stamp="LastModifiedDate",
        created_field="CreatedDate",
        format_id=fmt,
        parse_id=parse,
        key_prefix="500",
        fields=_sf_common(
            (
                FieldSpec("CaseNumber", updateable=False, label="Case Number"),
                FieldSpec("Subject"),
                FieldSpec("Description", TEXT),
                FieldSpec("Status", PICKLIST, required=True, picklist=SF_CASE_STATUS),
                FieldSpec("Priority", PICKLIST, picklist=SF_CASE_PRIORITY),
                FieldSpec("Origin", PICKLIST, picklist=SF_CASE_ORIGIN, label="Case Origin"),
                FieldSpec("ContactId", REFERENCE, reference_to="Contact", label="Contact ID"),
                FieldSpec("AccountId", REFERENCE, reference_to="Account", label="Account ID"),
                FieldSpec("IsClosed", BOOLEAN, updateable=False, label="Closed"),
                FieldSpec("ClosedDate", DATETIME, label="Closed Date"),
                FieldSpec("External_Id__c", STRING, external_id=True, label="External ID"),
            )
        ),
    )
    return objs


def _hubspot() -> dict[str, ObjectSpec]:
    fmt, parse = _hubspot_ids()
    common = (
        FieldSpec("hs_object_id", ID, updateable=False, label="Record ID"),
        FieldSpec("createdate", DATETIME, updateable=False, label="Create Date"),
    )
    objs = {}
    objs["contacts"] = ObjectSpec(
        crm="hubspot",
        name="contacts",
        label="Contact",
        id_field="hs_object_id",
        system_stamp="lastmodifieddate",
        created_field="createdate",
        format_id=fmt,
        parse_id=parse,
        fields=(
            *common,
            FieldSpec("lastmodifieddate", DATETIME, updateable=False, label="Last Modified Date"),
            FieldSpec("email", EMAIL, label="Email"),
            FieldSpec("firstname", label="First Name"),
            FieldSpec("lastname", label="Last Name"),
            FieldSpec("phone", PHONE, label="Phone Number"),
            FieldSpec("jobtitle", label="Job Title"),
            FieldSpec("company", label="Company Name"),
            FieldSpec("associatedcompanyid", REFERENCE, reference_to="companies", label="Primary Company ID"),
            FieldSpec("lifecyclestage", PICKLIST, picklist=LIFECYCLE_STAGES, label="Lifecycle Stage"),
            FieldSpec("hubspot_owner_id", label="Contact owner"),
            FieldSpec("hs_email_optout", BOOLEAN, label="Unsubscribed from all email"),
        ),
    )
    objs["companies"] = ObjectSpec(
        crm="hubspot",
        name="companies",
        label="Company",
        id_field="hs_object_id",
        system_stamp="hs_lastmodifieddate",
        created_field="createdate",
        format_id=fmt,
        parse_id=parse,
        fields=(
            *common,
            FieldSpec("hs_lastmodifieddate", DATETIME, updateable=False, label="Last Modified Date"),
            FieldSpec("name", required=True, label="Name"),
            FieldSpec("domain", label="Company Domain Name"),
            FieldSpec("industry", PICKLIST, picklist=INDUSTRIES, label="Industry"),
            FieldSpec("phone", PHONE, label="Phone Number"),
            FieldSpec("country", label="Country/Region"),
            FieldSpec("hubspot_owner_id", label="Company owner"),
        ),
    )
    objs["tickets"] = ObjectSpec(
        crm="hubspot",
        name="tickets",
        label="Ticket",
        id_field="hs_object_id",
        system_stamp="hs_lastmodifieddate",
        created_field="createdate",
        format_id=fmt,
        parse_id=parse,
        fields=(
            *common,
            FieldSpec("hs_lastmodifieddate", DATETIME, updateable=False, label="Last Modified Date"),
            FieldSpec("subject", required=True, label="Ticket name"),
            FieldSpec("content", TEXT, label="Ticket description"),
            FieldSpec("hs_pipeline", label="Pipeline"),
            FieldSpec(
                "hs_pipeline_stage", PICKLIST, required=True, picklist=HS_TICKET_STAGES, label="Ticket status"
            ),
            FieldSpec("hs_ticket_priority", PICKLIST, picklist=HS_TICKET_PRIORITY, label="Priority"),
            FieldSpec("closed_date", DATETIME, label="Close date"),
            FieldSpec("hs_contact_id", REFERENCE, reference_to="contacts", label="Associated contact"),
            FieldSpec("hubspot_owner_id", label="Ticket owner"),
        ),
    )
    return objs


def _dynamics() -> dict[str, ObjectSpec]:
    common_tail = (
        FieldSpec("statecode", INT, label="Status"),
        FieldSpec("_ownerid_value", REFERENCE, reference_to="systemuser", label="Owner"),
        FieldSpec("createdon", DATETIME, updateable=False, label="Created On"),
        FieldSpec("modifiedon", DATETIME, updateable=False, label="Modified On"),
        FieldSpec("versionnumber", INT, updateable=False, label="Version Number"),
    )
    objs = {}
    fmt, parse = _dynamics_ids(0x0002)
    objs["contacts"] = ObjectSpec(
        crm="dynamics",
        name="contacts",
        label="Contact",
        id_field="contactid",
        system_stamp="modifiedon",
        created_field="createdon",
        format_id=fmt,
        parse_id=parse,
        fields=(
            FieldSpec("contactid", ID, updateable=False, label="Contact"),
            FieldSpec("firstname", label="First Name"),
            FieldSpec("lastname", required=True, label="Last Name"),
            FieldSpec("fullname", updateable=False, label="Full Name"),
            FieldSpec("emailaddress1", EMAIL, label="Email"),
            FieldSpec("telephone1", PHONE, label="Business Phone"),
            FieldSpec("jobtitle", label="Job Title"),
            FieldSpec("_parentcustomerid_value", REFERENCE, reference_to="accounts", label="Company Name"),
            FieldSpec("donotemail", BOOLEAN, label="Do not allow Emails"),
            FieldSpec("externalid", STRING, external_id=True, label="External ID"),
            *common_tail,
        ),
    )
    fmt, parse = _dynamics_ids(0x0001)
    objs["accounts"] = ObjectSpec(
        crm="dynamics",
        name="accounts",
        label="Account",
        id_field="accountid",
        system_stamp="modifiedon",
        created_field="createdon",
        format_id=fmt,
        parse_id=parse,
        fields=(
            FieldSpec("accountid", ID, updateable=False, label="Account"),
            FieldSpec("name", required=True, label="Account Name"),
            FieldSpec("accountnumber", STRING, external_id=True, label="Account Number"),
            FieldSpec("websiteurl", URL, label="Website"),
            FieldSpec("telephone1", PHONE, label="Main Phone"),
            FieldSpec("address1_country", label="Country/Region"),
            *common_tail,
        ),
    )
    fmt, parse = _dynamics_ids(0x0070)
    objs["incidents"] = ObjectSpec(
        crm="dynamics",
        name="incidents",
        label="Case",
        id_field="incidentid",
        system_stamp="modifiedon",
        created_field="createdon",
        format_id=fmt,
        parse_id=parse,
        fields=(
            FieldSpec("incidentid", ID, updateable=False, label="Case"),
            FieldSpec("title", required=True, label="Case Title"),
            FieldSpec("ticketnumber", updateable=False, label="Case Number"),
            FieldSpec("description", TEXT, label="Description"),
            FieldSpec("prioritycode", INT, label="Priority"),
            FieldSpec("statuscode", INT, label="Status Reason"),
            FieldSpec("_customerid_value", REFERENCE, reference_to="accounts", label="Customer"),
            FieldSpec("_primarycontactid_value", REFERENCE, reference_to="contacts", label="Contact"),
            FieldSpec("resolvedon", DATETIME, label="Resolved On"),
            *common_tail,
        ),
    )
    return objs


OBJECTS: dict[str, dict[str, ObjectSpec]] = {
    "salesforce": _salesforce(),
    "hubspot": _hubspot(),
    "dynamics": _dynamics(),
}

# which object of each CRM plays which role, so the generator can link them
ROLES: dict[str, dict[str, str]] = {
    "salesforce": {"contact": "Contact", "account": "Account", "interaction": "Case"},
    "hubspot": {"contact": "contacts", "account": "companies", "interaction": "tickets"},
    "dynamics": {"contact": "contacts", "account": "accounts", "interaction": "incidents"},
}
