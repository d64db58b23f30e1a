"""``sync-platform``: the command line of the platform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sync_platform.settings import load_settings

app = typer.Typer(
    name="sync-platform",
    help="Keep CRM data (Salesforce, HubSpot, Dynamics 365) in sync with a warehouse, and notice when it is not.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Keep CRM data in sync with a warehouse, and notice when it silently is not."""


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8765,
    tls: Annotated[bool, typer.Option("--tls", help="Serve HTTPS with a freshly generated CA "
                                      "(simple-salesforce only speaks https).")] = False,
    contacts: Annotated[int, typer.Option(min=1, help="Contacts per CRM; accounts are 1/10, interactions 1/2.")]
    = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the deterministic record generator.")] = 42,
    token_lifetime: Annotated[float, typer.Option(min=1, help="Access-token lifetime in seconds.")] = 3600,
    hubspot_per_10s: Annotated[int, typer.Option(min=1, help="HubSpot requests per rolling 10 s.")] = 190,
    salesforce_daily: Annotated[int, typer.Option(min=1, help="Salesforce daily API request budget.")] = 100_000,
    dynamics_per_5min: Annotated[int, typer.Option(min=1, help="Dynamics requests per 5-minute window.")] = 6_000,
    tls_dir: Annotated[Path | None, typer.Option(help="Where to write the CA and server certificate "
                                                 "(default: data/sandbox/tls).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print connection details as JSON.")] = False,
) -> None:
    """Run the local CRM sandbox: Salesforce, HubSpot and Dynamics 365 APIs on one port."""
    from sync_platform.sandbox import SandboxConfig, SandboxServer
    from sync_platform.sandbox.limits import LimitConfig

    config = SandboxConfig(
        contacts=contacts, seed=seed, token_lifetime_seconds=token_lifetime,
        limits=LimitConfig(hubspot_per_10s=hubspot_per_10s, salesforce_daily=salesforce_daily,
                           dynamics_per_5min=dynamics_per_5min),
    )
    if tls and tls_dir is None:
        tls_dir = load_settings().sandbox_dir / "tls"
    try:
        server = SandboxServer(config, host=host, port=port, tls=tls, tls_dir=tls_dir, log_level="warning")
    except OSError as exc:
        raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror}", param_hint="--port") from None
    details = {"base_url": server.base_url, "admin_url": f"{server.base_url}/__sandbox/",
               "ca_file": server.ca_file, "credentials": server.state.credentials()}
    if as_json:
        typer.echo(json.dumps(details, indent=2))
    else:
        typer.echo(f"CRM sandbox serving {contacts:,} contacts per CRM (seed {seed}) at {server.base_url}")
        typer.echo(f"  admin API      {details['admin_url']}")
        if server.ca_file:
            typer.echo(f"  CA certificate {server.ca_file}  (clients: verify=<this file>)")
        for crm, creds in details["credentials"].items():
            typer.echo(f"  {crm}")
            for key, value in creds.items():
                typer.echo(f"    {key:18} {value}")
        typer.echo("These are sandbox-only credentials. Press Ctrl-C to stop.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


@app.command()
def demo(
    contacts: Annotated[int, typer.Option(min=10, help="Contacts per CRM in the sandbox.")] = 20_000,
) -> None:
    """Run the main job end to end: sandbox, full sync of all CRMs through Dagster, changes, incremental sync."""
    from sync_platform.demo import run_demo

    run_demo(contacts, echo=typer.echo)


if __name__ == "__main__":
    app()
