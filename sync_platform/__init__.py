"""sync_platform: keep CRM data in sync with a warehouse, and notice when it silently is not."""
