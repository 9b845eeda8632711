"""Any S3 API as an ObjectStore: conditional puts, multipart uploads, presigned URLs.

The only module that sees botocore's errors; it translates them into ours.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, BinaryIO

from pipeline.config import Settings
from pipeline.errors import InputError, NotFoundError, RetryableError, VoicebatchError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
from pipeline.storage.keys import check_key

# Outputs up to this size go up in one conditional PUT; larger ones as a multipart upload
# completed conditionally (S3 allows If-None-Match on both).
SINGLE_PUT_BYTES = 64 << 20


PART_BYTES = 16 << 20


# Audio objects carry this tag, so that the lifecycle rule that moves finished audio to
# cold storage leaves manifests, timing files and covers readable (pipeline.storage.lifecycle).
ARCHIVE_TAG = ("voicebatch-archive", "audio")


def _attrs(content_type: str) -> Any:
    attrs: dict[str, str] = {"ContentType": content_type}
    if content_type.startswith("audio/"):
        attrs["Tagging"] = f"{ARCHIVE_TAG[0]}={ARCHIVE_TAG[1]}"
    return attrs


class S3ObjectStore:
    """Objects in an S3 bucket under a prefix (AWS, MinIO, any S3 API), via boto3."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str,
        client: S3Client,
        presign_seconds: int = 3600,
        presign_client: S3Client | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.presign_seconds = presign_seconds
        # Signs download URLs for the endpoint clients reach (compose: localhost, not minio)
        self.presign_client = presign_client or client
        self._bucket_ok = False

    def child(self, prefix: str) -> S3ObjectStore:
        return S3ObjectStore(
            bucket=self.bucket,
            prefix=self._key(prefix),
            client=self.client,
            presign_seconds=self.presign_seconds,
            presign_client=self.presign_client,
        )

    @classmethod
    def from_settings(cls, url: str, settings: Settings) -> S3ObjectStore:
        import boto3
        from botocore.config import Config

        bucket, _, prefix = url[len("s3://") :].partition("/")
        secret = settings.s3_secret_access_key

        def client_for(endpoint: str | None) -> S3Client:
            return boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key_id,
                aws_secret_access_key=secret.get_secret_value() if secret else None,
                config=Config(
                    signature_version="s3v4",
                    # 5xx, throttling and timeouts are retried with backoff and jitter
                    retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=settings.s3_timeout_seconds,
                    read_timeout=settings.s3_timeout_seconds,
                    max_pool_connections=64,  # render tasks upload on several threads each
                    s3={"addressing_style": "path" if endpoint else "auto"},
                ),
            )

        client = client_for(settings.s3_endpoint_url)
        public = settings.s3_public_endpoint_url
        return cls(
            bucket=bucket,
            prefix=prefix,
            client=client,
            presign_seconds=settings.s3_presign_seconds,
            presign_client=client_for(public) if public else None,
        )

    def _key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: Exception, full_key: str) -> Exception:
        from botocore.exceptions import ClientError

        where = f"s3://{self.bucket}/{full_key}"
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotFoundError(f"no object {where}")
            if code == "NoSuchBucket":
                return InputError(f"S3 bucket {self.bucket} does not exist")
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return InputError(f"S3 refused access to s3://{self.bucket} ({code})")
        return RetryableError(f"S3 request for {where} failed: {' '.join(str(exc).split())}")

    def error_for(self, exc: Exception, full_key: str = "") -> Exception:
        """The voicebatch error for a failed request about `full_key` (bucket-level: "")."""
        return self._error(exc, full_key)

    def _check_bucket(self) -> None:
        """A bare 404 on HEAD cannot tell a missing key from a missing bucket: ask once."""
        from botocore.exceptions import ClientError

        if self._bucket_ok:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchBucket", "NotFound"):
                raise InputError(f"S3 bucket {self.bucket} does not exist") from exc
            raise self._error(exc, "") from exc
        self._bucket_ok = True

    def put_if_absent(self, key: str, data: bytes, *, content_type: str) -> bool:
        full = self._key(key)
        try:
            return self._put_once(full, data, content_type)
        except VoicebatchError:
            raise
        except Exception as exc:
            raise self._error(exc, full) from exc

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        full = self._key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data, **_attrs(content_type))
        except Exception as exc:
            raise self._error(exc, full) from exc

    def put_file(self, key: str, source: BinaryIO, *, content_type: str) -> None:
        full = self._key(key)
        try:
            # Multipart past 8 MB, so a 10-hour book never sits in memory.
            self.client.upload_fileobj(source, self.bucket, full, ExtraArgs=_attrs(content_type))
        except Exception as exc:
            raise self._error(exc, full) from exc

    def put_file_if_absent(self, key: str, source: BinaryIO, *, content_type: str) -> bool:
        full = self._key(key)
        start = source.tell()
        size = source.seek(0, os.SEEK_END) - start
        source.seek(start)
        try:
            if size <= SINGLE_PUT_BYTES:
                return self._put_once(full, source.read(), content_type)
            return self._multipart_once(full, source, content_type)
        except VoicebatchError:
            raise
        except Exception as exc:
            raise self._error(exc, full) from exc

    def _put_once(self, full: str, data: bytes, content_type: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*", **_attrs(content_type)
            )
            return True
        except ClientError as exc:
            return self._lost_race(exc, full)

    def _lost_race(self, exc: Exception, full: str) -> bool:
        """False for an If-None-Match refusal (the key exists: success); raise otherwise."""
        from botocore.exceptions import ClientError

        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        if code == "PreconditionFailed":
            return False
        if code == "ConditionalRequestConflict":
            # A concurrent write of the same key is in flight; retried, it finds the key.
            raise RetryableError(f"concurrent write of {full}; retry") from exc
        raise self._error(exc, full) from exc

    def _multipart_once(self, full: str, source: BinaryIO, content_type: str) -> bool:
        """A multipart upload completed with If-None-Match: the object appears whole, once,
        or not at all; an abandoned upload is aborted (and lifecycle rules abort the rest)."""
        from botocore.exceptions import ClientError

        upload = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=full, **_attrs(content_type)
        )["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            while block := source.read(PART_BYTES):
                number = len(parts) + 1
                etag = self.client.upload_part(
                    Bucket=self.bucket, Key=full, PartNumber=number, UploadId=upload, Body=block
                )["ETag"]
                parts.append({"ETag": etag, "PartNumber": number})
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                IfNoneMatch="*",
            )
            return True
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload)
            if isinstance(exc, ClientError):
                return self._lost_race(exc, full)
            raise

    def get(self, key: str) -> bytes:
        full = self._key(key)
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
            return body
        except Exception as exc:
            raise self._error(exc, full) from exc

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        full = self._key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=full)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NotFound"):
                self._check_bucket()
                return False
            raise self._error(exc, full) from exc
        except Exception as exc:
            raise self._error(exc, full) from exc

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            raise self._error(exc, full) from exc

    def head(self, key: str) -> dict[str, Any]:
        """The object's HEAD response (StorageClass, Restore, ContentLength...)."""
        full = self._key(key)
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=full))
        except Exception as exc:
            raise self._error(exc, full) from exc

    def restore(self, key: str, *, days: int, tier: str) -> str | None:
        """Ask S3 for a temporary readable copy of an archived object; the error code
        S3 refused it with (RestoreAlreadyInProgress, ...), or None when it took it."""
        from botocore.exceptions import ClientError

        full = self._key(key)
        try:
            self.client.restore_object(
                Bucket=self.bucket,
                Key=full,
                RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}},  # type: ignore[typeddict-item]
            )
            return None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("RestoreAlreadyInProgress", "GlacierExpeditedRetrievalNotAvailable"):
                return code
            raise self._error(exc, full) from exc
        except Exception as exc:
            raise self._error(exc, full) from exc

    def url(self, key: str) -> str:
        url: str = self.presign_client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=self.presign_seconds,
        )
        return url
