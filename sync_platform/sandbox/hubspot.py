"""hubspot dialect (placeholder until its routes land)."""

from .dialect import Dialect


class HubSpotDialect(Dialect):
    crm = "hubspot"
    catch_all_prefix = "/__placeholder_hubspot"

    def routes(self):
        return []
