"""sync_platform: keep CRM data in sync with a warehouse, and notice when it silently is not."""

import os

from sync_platform.security.log_redaction import install_log_redaction

# no phoning home: dlt's anonymous telemetry would open connections to the internet on every run
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

install_log_redaction()  # every entry point (CLI, Dagster code location, tests) imports the package
