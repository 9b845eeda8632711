"""The summary a catalogue job leaves beside its item files: one CSV row per item.

Shops feed it to their product database: which id got which file, how long it runs,
and which rows failed and why, without reading manifest.json.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.assemble.keys import SUMMARY_KEY
from pipeline.state.models import Item, ItemStatus
from pipeline.storage.base import ObjectStore

SUMMARY_COLUMNS = ("id", "file", "duration_seconds", "status", "error")


@dataclass(frozen=True)
class SummaryRow:
    item_id: str
    file: str | None
    duration_seconds: float | None
    status: str
    error: str | None


def summary_rows(
    items: Sequence[Item], failed_chunks: Sequence[dict[str, Any]]
) -> list[SummaryRow]:
    """Every item in catalogue order. A failed item's error says why its first failed
    chunk failed, which is what a person fixes."""
    first_error: dict[str, str] = {}
    for chunk in failed_chunks:
        if chunk.get("error"):
            first_error.setdefault(str(chunk["item"]), str(chunk["error"]))
    rows = []
    for item in items:
        done = item.status == ItemStatus.DONE
        error = None
        if not done:
            parts = [p for p in (item.error, first_error.get(item.title)) if p]
            error = "; ".join(parts) or None
        rows.append(
            SummaryRow(
                item_id=item.title,
                file=item.object_key if done else None,
                duration_seconds=item.duration_seconds if done else None,
                status=str(item.status),
                error=" ".join(error.split()) if error else None,
            )
        )
    return rows


def write_summary(output_store: ObjectStore, rows: Sequence[SummaryRow]) -> str:
    """Write the summary CSV (a header row, then one row per item); returns its key.

    File names are the keys the manifest and downloads list (items/<name>)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(SUMMARY_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row.item_id,
                row.file or "",
                "" if row.duration_seconds is None else f"{row.duration_seconds:.3f}",
                row.status,
                row.error or "",
            ]
        )
    output_store.put(SUMMARY_KEY, buffer.getvalue().encode("utf-8"), content_type="text/csv")
    return SUMMARY_KEY
