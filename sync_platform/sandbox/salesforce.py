"""salesforce dialect (placeholder until its routes land)."""

from .dialect import Dialect


class SalesforceDialect(Dialect):
    crm = "salesforce"
    catch_all_prefix = "/__placeholder_salesforce"

    def routes(self):
        return []
