"""Business refusals as Dagster failures without a Python stack trace.

A posting window that may not run (outside the posting hours, validation not settled, the
plan over `max_lines`, another window holding the lock, a missing operator) is not a crash:
finance should read one sentence and the figures, not a traceback.

`dagster.Failure` alone does not do that in Dagster 1.13.27: the step failure event
serialises `sys.exc_info()`, so the UI and the console print "Stack Trace:" with ten
Dagster frames under the description (checked in
`dagster/_core/execution/plan/execute_plan.py`, case (2), and in the UI's `FailureContent`,
which prints the stack whenever it is non-empty). `Refusal` is a `Failure` (description,
metadata, no retries) that is also a `DagsterUserCodeProcessError` carrying one prepared,
stack-less error: `serializable_error_info_from_exc_info` hoists that error into the
event instead of the traceback. Both names come from Dagster's internals;
`tests/test_posting_dagster.py` checks the event so that an upgrade that changes them fails
a test rather than bringing the stack traces back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Failure
from dagster._core.errors import DagsterUserCodeProcessError
from dagster._utils.error import SerializableErrorInfo


class Refusal(DagsterUserCodeProcessError, Failure):
    """Fail the step with `description` and `metadata`, no stack trace and no retry."""

    def __init__(
        self, description: str, metadata: Mapping[str, Any] | None = None, kind: str = "Refused"
    ) -> None:
        error = SerializableErrorInfo(message=description, stack=[], cls_name=kind)
        super().__init__(description, user_code_process_error_infos=[error])
        Failure.__init__(self, description, metadata, allow_retries=False)
