"""Bucket lifecycle rules from the settings: what S3 deletes, archives and aborts by itself.

Three rules, each named `voicebatch-...` and scoped to the storage URL's prefix:

- chunk audio (`<prefix>/chunks/`) expires `chunk_expire_days` after it was written: it
  is a cache, rendered again when needed (the renderer checks that a cached object still
  exists before it trusts the database's record of it);
- finished audio (`<prefix>/jobs/`, objects tagged as audio) moves to
  `archive_storage_class` after `archive_after_days`; manifests, timing files and covers
  stay readable;
- multipart uploads still unfinished after `abort_multipart_days` are aborted.

Applying merges: rules with other IDs (someone else's) are kept as they are; ours are
replaced with what the settings say now.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import Settings
from pipeline.errors import InputError
from pipeline.storage.factory import open_store
from pipeline.storage.keys import CHUNKS_FOLDER, JOBS_FOLDER
from pipeline.storage.s3 import ARCHIVE_TAG, S3ObjectStore

RULE_PREFIX = "voicebatch-"


def _scope(prefix: str, folder: str) -> str:
    return f"{prefix.strip('/')}/{folder}/" if prefix.strip("/") else f"{folder}/"


def rules_from_settings(settings: Settings, prefix: str) -> list[dict[str, Any]]:
    """The lifecycle rules the settings ask for, in S3's (boto3's) shape."""
    rules: list[dict[str, Any]] = [
        {
            "ID": f"{RULE_PREFIX}chunks-expire",
            "Filter": {"Prefix": _scope(prefix, CHUNKS_FOLDER)},
            "Status": "Enabled",
            "Expiration": {"Days": settings.chunk_expire_days},
        },
        {
            "ID": f"{RULE_PREFIX}abort-multipart",
            "Filter": {"Prefix": f"{prefix.strip('/')}/" if prefix.strip("/") else ""},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {
                "DaysAfterInitiation": settings.abort_multipart_days
            },
        },
    ]
    if settings.archive_after_days > 0:
        rules.insert(
            1,
            {
                "ID": f"{RULE_PREFIX}outputs-archive",
                "Filter": {
                    "And": {
                        "Prefix": _scope(prefix, JOBS_FOLDER),
                        "Tags": [{"Key": ARCHIVE_TAG[0], "Value": ARCHIVE_TAG[1]}],
                    }
                },
                "Status": "Enabled",
                "Transitions": [
                    {
                        "Days": settings.archive_after_days,
                        "StorageClass": settings.archive_storage_class,
                    }
                ],
            },
        )
    return rules


def s3_store(settings: Settings) -> S3ObjectStore:
    """The S3 store the settings name; lifecycle rules are an S3 feature."""
    url = settings.resolved_storage_url
    if not url.startswith("s3://"):
        raise InputError(
            f"lifecycle rules are an S3 feature; storage is the local folder {url} "
            "(set VOICEBATCH_STORAGE_URL=s3://bucket/prefix)"
        )
    found = open_store(url, settings)
    assert isinstance(found, S3ObjectStore)
    return found


def read_rules(s3: S3ObjectStore) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules now (none: an empty list)."""
    from botocore.exceptions import ClientError

    try:
        answer = s3.client.get_bucket_lifecycle_configuration(Bucket=s3.bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise s3.error_for(exc, "") from exc
    except Exception as exc:
        raise s3.error_for(exc, "") from exc
    return [dict(rule) for rule in answer.get("Rules", [])]


def merged_rules(
    existing: list[dict[str, Any]], ours: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Everyone else's rules as they were, then ours; a rule of ours that the settings no
    longer ask for (archiving turned off) is dropped."""
    others = [r for r in existing if not str(r.get("ID", "")).startswith(RULE_PREFIX)]
    return others + ours


def apply_rules(settings: Settings) -> tuple[S3ObjectStore, list[dict[str, Any]]]:
    """Write the merged rules to the bucket; returns them as the bucket reports them."""
    s3 = s3_store(settings)
    rules = merged_rules(read_rules(s3), rules_from_settings(settings, s3.prefix))
    try:
        s3.client.put_bucket_lifecycle_configuration(
            Bucket=s3.bucket,
            LifecycleConfiguration={"Rules": rules},  # type: ignore[typeddict-item]
        )
    except Exception as exc:
        raise s3.error_for(exc, "") from exc
    return s3, read_rules(s3)


def describe(rule: dict[str, Any]) -> str:
    """One line saying what a rule does."""
    scope = rule.get("Filter", {})
    where = scope.get("Prefix")
    tags = []
    if "And" in scope:
        where = scope["And"].get("Prefix")
        tags = [f"{t['Key']}={t['Value']}" for t in scope["And"].get("Tags", [])]
    elif "Tag" in scope:
        tags = [f"{scope['Tag']['Key']}={scope['Tag']['Value']}"]
    actions = []
    if "Expiration" in rule:
        actions.append(f"delete after {rule['Expiration'].get('Days')} days")
    for transition in rule.get("Transitions", []):
        actions.append(f"move to {transition['StorageClass']} after {transition['Days']} days")
    if "AbortIncompleteMultipartUpload" in rule:
        days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        actions.append(f"abort unfinished uploads after {days} days")
    target = f"{where or '(whole bucket)'}" + (f" tagged {', '.join(tags)}" if tags else "")
    return f"{rule.get('ID', '(no id)')} [{rule.get('Status')}]: {target}: {'; '.join(actions)}"
