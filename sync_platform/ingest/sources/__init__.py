"""dlt sources for the CRMs, with no Dagster imports: salesforce/, hubspot/, dynamics/.

``http.py`` is the one HTTP policy all three share (auth refresh, client-side rate limit,
retries with backoff, error taxonomy, counters); ``auth.py`` holds the OAuth token providers.
"""
