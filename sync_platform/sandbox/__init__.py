"""A local emulator of the Salesforce, HubSpot and Dynamics 365 APIs (the CRM sandbox).

One ASGI app serves all three dialects at their real paths, backed by a lazily generated,
seeded record store, so real client libraries work against it offline.
"""

from .server import SandboxServer
from .state import SandboxConfig, SandboxState

__all__ = ["SandboxConfig", "SandboxServer", "SandboxState"]
