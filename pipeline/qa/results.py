"""QA while rendering, once the job is assembled: the verdicts the renderers stored with
each chunk, placed in the finished files and written the way `voicebatch qa` writes its
own (qa.json, a `words` list per chunk in the timing files, the manifest's `qa`
summary), plus the chunks still flagged with their times in their file and in the book,
so a person listens to only those. The same summary goes into the job's row, for the
API and `voicebatch status`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pipeline.assemble.manifest import is_catalogue, read_manifest, write_manifest
from pipeline.qa.check import ChunkCheck, Span, TimedWord
from pipeline.qa.report import FileResult, QaReport, record, targets
from pipeline.qa.words import split_words, tokens_of
from pipeline.state import verdicts
from pipeline.state.db import transaction
from pipeline.state.models import Job
from pipeline.storage.base import ObjectStore
from pipeline.storage.write_once import WriteOnceStore


def placed(stored: verdicts.StoredVerdict | None, index: int, span: Span) -> ChunkCheck:
    """A stored verdict placed in its file (word times moved by the chunk's start and
    kept inside its span); a chunk without one is an unchecked, unflagged entry."""
    if stored is None:
        return ChunkCheck(index, span.start, span.end, span.text, 0, 0)
    tokens = len(tokens_of(split_words(stored.text)))

    def at(seconds: Any) -> float:
        return round(min(max(span.start + float(seconds), span.start), span.end), 3)

    words = [TimedWord(str(w["text"]), at(w["start"]), at(w["end"])) for w in stored.words]
    return ChunkCheck(
        index,
        span.start,
        span.end,
        span.text,
        tokens,
        round(stored.error_rate * tokens),
        list(stored.flags),
        words=words,
        word_count=len(split_words(stored.text)),
    )


def matched(
    spans: Sequence[Span], stored: Sequence[verdicts.StoredVerdict], start: int
) -> tuple[list[verdicts.StoredVerdict | None], int]:
    """The stored verdicts of one file's spans, read in order from `start` in the job's
    done chunks (reading order): a file lists a subsequence of them. Returns them and
    where the next file's search starts."""
    out: list[verdicts.StoredVerdict | None] = []
    at = start
    for span in spans:
        probe = at
        while probe < len(stored) and stored[probe].text != span.text:
            probe += 1
        if probe < len(stored):
            out.append(stored[probe])
            at = probe + 1
        else:
            out.append(None)
    return out, at


def record_job(
    factory: sessionmaker[Session],
    *,
    job_id: uuid.UUID,
    output_store_for: Callable[[str], ObjectStore],
    model: str,
) -> dict[str, Any] | None:
    """Write the job's QA results into its finished folder and its row; the summary, or
    None when the job has no checked chunk or no manifest of its own in its folder.

    Distributed mode's folder is written once per file (`WriteOnceStore`); QA replaces
    the manifest and timing files as `voicebatch qa` does, so it writes through to the
    store beneath. Only the finalizer holding the job's lease calls this, after its
    files and before the job is marked finished (pipeline.assemble.messages); run again
    after a crash, it writes the same results again."""
    with transaction(factory) as session:
        stored = verdicts.job_verdicts(session, job_id=job_id)
        uri = session.get(Job, job_id).output_uri if stored else None  # type: ignore[union-attr]
    if not stored or uri is None:
        return None
    output = output_store_for(uri)
    if isinstance(output, WriteOnceStore):
        output = output.inner
    manifest = read_manifest(output)
    if manifest is None or manifest.get("job_id") != str(job_id):
        return None
    report = QaReport(model)
    takes: dict[tuple[str, int], int] = {}
    at = 0
    for target in targets(manifest):
        found, at = matched(target.spans, stored, at)
        checks = [
            placed(v, i, span) for i, (v, span) in enumerate(zip(found, target.spans, strict=True))
        ]
        for check, verdict in zip(checks, found, strict=True):
            takes[(target.file, check.index)] = verdict.takes if verdict else 1
        audio = max((span.end for span in target.spans), default=0.0)
        report.files.append(FileResult(target, checks, audio))
    record(output, report)
    book = not is_catalogue(manifest)
    flagged = [
        {
            "file": result.target.file,
            "chunk": check.index,
            "start": round(check.start, 3),
            "end": round(check.end, 3),
            **(
                {
                    "book_start": round(check.start + result.target.offset, 3),
                    "book_end": round(check.end + result.target.offset, 3),
                }
                if book
                else {}
            ),
            "flags": check.flags,
            "error_rate": round(check.error_rate, 4),
            "takes": takes[(result.target.file, check.index)],
            "text": check.text,
        }
        for result, check in report.flagged
    ]
    manifest = read_manifest(output) or manifest
    summary = {
        **(manifest.get("qa") or report.summary()),
        "live": True,
        "retaken": sum(1 for v in stored if v.takes > 1),
        "flagged_chunks": flagged,
    }
    summary.pop("seconds", None)  # the checks ran inside the renders: no time of their own
    manifest["qa"] = summary
    write_manifest(output, manifest)
    with transaction(factory) as session:
        verdicts.set_job_qa(session, job_id=job_id, summary=summary)
    return summary


def job_qa(session: Session, job: Job) -> dict[str, Any] | None:
    """What QA while rendering says of a job, for the API and `voicebatch status`: None
    for a job without QA; the summary written at the end, with each flagged chunk's times
    (`flagged_chunks`), once the job is assembled; before that, the counts so far and the
    chunks flagged so far (no times yet)."""
    if not (job.options or {}).get("qa"):
        return None
    if job.qa is not None:
        return dict(job.qa)
    counts = verdicts.qa_counts(session, job_id=job.id)
    return {
        "chunks": counts.checked,
        "flagged": counts.flagged,
        "retaken": counts.retaken,
        "flagged_chunks": [
            {
                "item": v.item,
                "seq": v.seq,
                "flags": list(v.flags),
                "error_rate": round(v.error_rate, 4),
                "takes": v.takes,
                "text": v.text,
            }
            for v in verdicts.flagged_so_far(session, job_id=job.id)
        ],
    }
