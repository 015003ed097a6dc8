"""A delivery's files: the rows as CSV and JSON Lines, and a manifest naming both.

Every value is text or null (the staging query casts each column to text, so a decimal keeps
its scale, `10.00`, and is never a binary float; dates are ISO). The content hash of a
delivery is the SHA-256 of its JSON Lines bytes; the manifest carries it, the sequence
number and each file's own hash, and is written last: a reader waits for the manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

#: Bumped when the outbound format changes incompatibly (docs/status_feedback.md).
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Encoded:
    """A delivery's data files (name -> bytes, manifest last) and its content hash."""

    files: dict[str, bytes]
    content_hash: str


def file_stem(feed: str, sequence: int) -> str:
    """`<feed>_<sequence, 8 digits>`: files sort in delivery order."""
    return f"{feed}_{sequence:08d}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def jsonl(frame: pd.DataFrame, lines: pd.Series | None = None) -> bytes:
    """One JSON object per row, keys in column order, text values (nulls as null). `lines`:
    the objects already as JSON text (the staging database builds them: pandas' writer took
    2 s for 200,000 records, a join of ready lines takes milliseconds)."""
    if frame.empty:
        return b""
    if lines is not None:
        return ("\n".join(lines.tolist()) + "\n").encode()
    text = frame.to_json(orient="records", lines=True, force_ascii=False)
    return (text if text.endswith("\n") else text + "\n").encode()


def csv(frame: pd.DataFrame) -> bytes:
    """RFC 4180 CSV with a header row (Arrow's writer: quoted where needed, nulls empty)."""
    table = pa.Table.from_pandas(frame, preserve_index=False).cast(
        pa.schema([(c, pa.string()) for c in frame.columns])
    )
    out = io.BytesIO()
    pa_csv.write_csv(table, out, pa_csv.WriteOptions(quoting_style="needed"))
    return out.getvalue()


def encode(
    feed: str,
    sequence: int,
    frame: pd.DataFrame,
    *,
    full_resend: bool,
    created_at: datetime,
    json_lines: pd.Series | None = None,
) -> Encoded:
    """The files of delivery `sequence` of `feed` (rows: `frame`, text columns; `json_lines`:
    each row as a JSON object already, see `jsonl`)."""
    stem = file_stem(feed, sequence)
    data = jsonl(frame, json_lines)
    table = csv(frame)
    content_hash = sha256(data)
    manifest = {
        "format_version": FORMAT_VERSION,
        "feed": feed,
        "sequence": sequence,
        "created_at": created_at.isoformat(),
        "full_resend": full_resend,
        "records": len(frame),
        "columns": list(frame.columns),
        "content_sha256": content_hash,
        "files": {f"{stem}.jsonl": content_hash, f"{stem}.csv": sha256(table)},
    }
    return Encoded(
        {
            f"{stem}.jsonl": data,
            f"{stem}.csv": table,
            f"{stem}.manifest.json": (json.dumps(manifest, indent=2) + "\n").encode(),
        },
        content_hash,
    )
