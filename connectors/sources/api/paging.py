"""Paging to the end, the way each vendor documents it. Every function yields the records
of every page, in order, and stops only at the documented end: a page that is not the
documented shape raises `ApiResponseError` instead of ending the pull early (an early end
would pass for "nothing more changed").

- `by_next_link`: Harvest v2 (`links.next`, cursor links; `next_page` is null on the last page).
- `by_total_pages`: Kimai (`X-Total-Pages` header, pages numbered from 1).
- `by_short_page`: Clockify (`page`/`page-size`; a page shorter than the size is the last).
- `single`: Toggl's `/me/time_entries` (one answer holds everything since `since`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from connectors.sources.api.errors import ApiResponseError
from connectors.sources.api.http import ApiClient

#: A pull never follows more pages than this (a vendor answering the same page forever).
MAX_PAGES = 100_000


def _records(where: str, data: Any, key: str | None) -> list[dict]:
    rows = data.get(key) if key and isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        shape = f"a list under {key!r}" if key else "a list"
        raise ApiResponseError(f"{where}: expected {shape} of records, got {type(rows).__name__}")
    return rows


def by_next_link(client: ApiClient, path: str, params: dict[str, Any], key: str) -> Iterator[dict]:
    """Harvest: follow `links.next` (an absolute URL on the API's host) until it is null."""
    url: str | None = path
    query: dict[str, Any] | None = params
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        page = client.get(url, query)  # type: ignore[arg-type]
        yield from _records(f"{client.vendor} API GET {path}", page.data, key)
        nxt = (page.data.get("links") or {}).get("next") if isinstance(page.data, dict) else None
        if not nxt:
            return
        parts = urlsplit(nxt)
        base = urlsplit(client.base_url)
        if parts.netloc and parts.netloc != base.netloc:
            raise ApiResponseError(
                f"{client.vendor} API: next page link points to another host ({parts.netloc}); "
                "not followed (the token would go with it)"
            )
        rel = parts.path
        if rel.startswith(base.path):
            rel = rel[len(base.path) :]
        url = rel + (f"?{parts.query}" if parts.query else "")
        if url in seen:
            raise ApiResponseError(f"{client.vendor} API: page link {url} repeats; stopped")
        seen.add(url)
        query = None  # the link carries every parameter
    raise ApiResponseError(f"{client.vendor} API GET {path}: more than {MAX_PAGES} pages")


def by_total_pages(
    client: ApiClient, path: str, params: dict[str, Any], *, size: int
) -> Iterator[dict]:
    """Kimai: pages 1..`X-Total-Pages` of `size` records."""
    page_no, total = 1, 1
    while page_no <= total:
        page = client.get(path, {**params, "page": page_no, "size": size})
        yield from _records(f"{client.vendor} API GET {path}", page.data, None)
        header = page.headers.get("X-Total-Pages")
        try:
            total = int(header) if header is not None else page_no
        except ValueError:
            raise ApiResponseError(
                f"{client.vendor} API GET {path}: X-Total-Pages {header!r} is not a number"
            ) from None
        page_no += 1
        if page_no > MAX_PAGES:
            raise ApiResponseError(f"{client.vendor} API GET {path}: more than {MAX_PAGES} pages")


def by_short_page(
    client: ApiClient,
    path: str,
    params: dict[str, Any],
    *,
    size: int,
    size_param: str = "page-size",
) -> Iterator[dict]:
    """Clockify: pages 1, 2, ... of `size` until a page holds fewer records than `size`."""
    for page_no in range(1, MAX_PAGES + 1):
        page = client.get(path, {**params, "page": page_no, size_param: size})
        rows = _records(f"{client.vendor} API GET {path}", page.data, None)
        yield from rows
        if len(rows) < size:
            return
    raise ApiResponseError(f"{client.vendor} API GET {path}: more than {MAX_PAGES} pages")


def single(client: ApiClient, path: str, params: dict[str, Any]) -> Iterator[dict]:
    """One answer holding every record (Toggl's `/me/time_entries`)."""
    page = client.get(path, params)
    yield from _records(f"{client.vendor} API GET {path}", page.data, None)
