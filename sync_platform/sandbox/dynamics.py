"""dynamics dialect (placeholder until its routes land)."""

from .dialect import Dialect


class DynamicsDialect(Dialect):
    crm = "dynamics"
    catch_all_prefix = "/__placeholder_dynamics"

    def routes(self):
        return []
