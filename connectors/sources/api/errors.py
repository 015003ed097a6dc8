"""What can go wrong talking to a vendor API, in the source error classes ingestion knows."""

from __future__ import annotations

from connectors.sources.base import RetryableSourceError, SourceError


class ApiAuthError(SourceError):
    """401 or 403: the token or account is wrong or lacks the right. Fatal (retrying cannot
    help, and an empty answer must never pass as "nothing changed"); names the setting."""


class ApiRequestError(SourceError):
    """The vendor refused the request itself (400, 404, 422...): a setting or stagepost is
    wrong; retrying the same request cannot help."""


class ApiUnavailable(RetryableSourceError):
    """The vendor is down, overloaded or rate-limits us beyond what one run waits: a later run
    pulls the same window again (the cursor has not moved)."""


class ApiResponseError(SourceError):
    """The vendor answered something that is not the documented shape (not JSON, a field of
    the wrong kind): nothing of the window is landed."""
