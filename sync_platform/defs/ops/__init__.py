"""Dagster definitions of the ops domain: the platform's own housekeeping."""
