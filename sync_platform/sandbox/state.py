"""Everything one sandbox instance knows: config, clock, stores, tokens, limits, faults, stats."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from . import schema
from .auth import TokenStore
from .clock import SandboxClock
from .faults import FaultInjector, RequestStats
from .generator import RecordGenerator, object_counts
from .limits import DynamicsLimits, HubSpotLimits, LimitConfig, SalesforceLimits
from .store import ObjectStore

CRMS = ("salesforce", "hubspot", "dynamics")


@dataclass
class SandboxConfig:
    """How a sandbox is seeded and what it accepts.

    The credentials are well-known sandbox values (like LocalStack's ``test``/``test``): they
    unlock nothing but this local emulator. Override them to rehearse secret handling.
    """

    contacts: int = 1_000
    seed: int = 42
    # share of the people (and companies) several CRMs hold that carry one real conflict: one CRM
    # holds another title, phone or lifecycle stage (industry, country or phone); the rest agree
    conflict_share: float = 0.02
    token_lifetime_seconds: float = 3_600.0
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    hubspot_private_app_token: str = "pat-sandbox-0000-0000"
    dynamics_tenant: str = "sandbox-tenant"
    dynamics_org: str = "sandbox"
    limits: LimitConfig = field(default_factory=LimitConfig)
    frozen_clock_at: float | None = None

    def __post_init__(self) -> None:
        if self.contacts < 1:
            raise ValueError(f"contacts must be at least 1, got {self.contacts}")
        if not 0.0 <= self.conflict_share <= 1.0:
            raise ValueError(f"conflict_share must be between 0 and 1, got {self.conflict_share}")


class SandboxState:
    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.clock = SandboxClock()
        if self.config.frozen_clock_at is not None:
            self.clock.freeze(self.config.frozen_clock_at)
        self.lock = threading.RLock()
        self.faults = FaultInjector(self.clock)
        self.stats = RequestStats()
        self.base_url = ""  # set by the server once bound
        self.alert_webhooks: list[dict] = []  # bodies POSTed to /__sandbox/webhooks/alerts
        self._build()

    def _build(self) -> None:
        cfg = self.config
        counts = object_counts(cfg.contacts)
        self.stores: dict[str, dict[str, ObjectStore]] = {}
        for crm in CRMS:
            self.stores[crm] = {}
            for role, name in schema.ROLES[crm].items():
                spec = schema.OBJECTS[crm][name]
                gen = RecordGenerator(cfg.seed, crm, spec, role, counts, cfg.conflict_share)
                self.stores[crm][name] = ObjectStore(spec, gen, self.clock, self.lock)
        lifetime = cfg.token_lifetime_seconds
        self.tokens = {
            "salesforce": TokenStore("salesforce", self.clock, cfg.client_id, cfg.client_secret, lifetime),
            "hubspot": TokenStore(
                "hubspot",
                self.clock,
                cfg.client_id,
                cfg.client_secret,
                lifetime,
                static_tokens=(cfg.hubspot_private_app_token,),
            ),
            "dynamics": TokenStore("dynamics", self.clock, cfg.client_id, cfg.client_secret, lifetime),
        }
        self.limits_salesforce = SalesforceLimits(cfg.limits, self.clock)
        self.limits_hubspot = HubSpotLimits(cfg.limits, self.clock)
        self.limits_dynamics = DynamicsLimits(cfg.limits, self.clock)
        # Dataverse tables whose change tracking is off (a table setting; every table starts tracked here)
        self.untracked_dynamics: set[str] = set()

    def reset(
        self, contacts: int | None = None, seed: int | None = None, conflict_share: float | None = None
    ) -> None:
        """Regenerate from the seed: drops every change, automation, token, fault and counter."""
        with self.lock:
            if conflict_share is not None and not 0.0 <= conflict_share <= 1.0:
                raise ValueError(f"conflict_share must be between 0 and 1, got {conflict_share}")
            if contacts is not None:
                self.config.contacts = contacts
            if seed is not None:
                self.config.seed = seed
            if conflict_share is not None:
                self.config.conflict_share = conflict_share
            self._build()
            self.faults.clear()
            self.stats.reset()

    def store(self, crm: str, obj: str) -> ObjectStore:
        try:
            return self.stores[crm][obj]
        except KeyError:
            raise KeyError(
                f"unknown object {crm}/{obj}; known: "
                + ", ".join(f"{c}/{o}" for c in CRMS for o in self.stores[c])
            ) from None

    def credentials(self) -> dict[str, dict[str, str]]:
        """What a client needs to connect to each emulated CRM (printed by the CLI)."""
        base, cfg = self.base_url, self.config
        return {
            "salesforce": {
                "instance_url": base,
                "token_url": f"{base}/services/oauth2/token",
                "client_id": cfg.client_id,
                "client_secret": cfg.client_secret,
                "api_version": "59.0",
            },
            "hubspot": {
                "host": base,
                "token_url": f"{base}/oauth/v1/token",
                "private_app_token": cfg.hubspot_private_app_token,
                "client_id": cfg.client_id,
                "client_secret": cfg.client_secret,
            },
            "dynamics": {
                "api_url": f"{base}/api/data/v9.2",
                "token_url": f"{base}/{cfg.dynamics_tenant}/oauth2/v2.0/token",
                "tenant": cfg.dynamics_tenant,
                "client_id": cfg.client_id,
                "client_secret": cfg.client_secret,
                "scope": f"https://{cfg.dynamics_org}.crm.dynamics.com/.default",
            },
        }
