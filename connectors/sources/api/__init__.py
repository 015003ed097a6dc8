"""PSA vendor APIs (Harvest v2, Toggl Track v9, Clockify, Kimai): pulled in windows, mapped to
the canonical columns and written as Parquet files that land like any export.

One concept per module: `http.py` (the httpx client with tenacity retries, 429/Retry-After and
the vendor's rate limit), `rate_limit.py`, `paging.py` (each vendor's way of paging to the end),
`window.py` (a pulled window and its Parquet file), `vendor.py` (what a vendor offers), and one
module per vendor mapping its JSON onto the canonical columns (`harvest.py`, `toggl.py`,
`clockify.py`, `kimai.py`). The cursor and the landing live a layer up, in
`staging_models/api_pull.py`. See docs/sources_api.md.
"""
