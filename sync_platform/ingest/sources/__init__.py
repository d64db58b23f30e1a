"""dlt sources for the CRMs, with no Dagster imports: salesforce/, hubspot/, dynamics/.

Each CRM folder has the shape of dlt's verified sources: ``__init__.py`` holds the ``@dlt.source``
functions and their resources, ``helpers.py`` the HTTP calls (query building, paging, parsing),
``settings.py`` the endpoints, page sizes and objects, and ``listing.py`` the CRM's reconciliation
listing. ``http.py`` is the one HTTP policy all three share (auth refresh, client-side rate limit,
retries with backoff, error taxonomy, counters); ``auth.py`` holds the OAuth token providers;
``listing_common.py`` what the three listings share.
"""
