"""The HTTP client the CLI uses to talk to a voicebatch API server."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from pipeline.errors import InputError, NotFoundError, RetryableError, VoicebatchError


class AuthError(InputError):
    """The server refused the API key."""

    exit_code = 3


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("message") or response.text)
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase


class ApiClient:
    """Calls /v1 with `Authorization: Bearer <key>`; HTTP errors become voicebatch errors."""

    def __init__(self, url: str, key: str | None, *, timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"API URL {url!r} must start with http:// or https://")
        if not key:
            raise InputError("no API key: pass --api-key or set VOICEBATCH_API_KEY")
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, *, patience: int = 3, **kwargs: Any) -> Any:
        """One API call. A 429 is waited out (its Retry-After, up to `patience` times)."""
        for _ in range(patience + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise RetryableError(f"cannot reach the API at {self.url}: {exc}") from exc
            if response.status_code != 429:
                break
            retry_after = response.headers.get("Retry-After", "5")
            time.sleep(min(60, int(retry_after) if retry_after.isdigit() else 5))
        status = response.status_code
        if 300 <= status < 400:
            raise InputError(
                f"the API at {self.url} redirected to {response.headers.get('location')}; "
                "use that URL"
            )
        if status < 400:
            try:
                return response.json()
            except ValueError:
                raise InputError(
                    f"{self.url} did not answer like a voicebatch API (HTTP {status}, "
                    f"{response.headers.get('content-type', 'no content type')})"
                ) from None
        message = _message(response)
        if status == 401:
            raise AuthError(f"the API refused the key: {message}")
        if status == 404:
            raise NotFoundError(message)
        if status == 429:
            raise RetryableError(f"{message} (rate limited)")
        if status >= 500:
            raise RetryableError(f"the API failed ({status}): {message}")
        if status == 409:
            raise VoicebatchError(message)
        raise InputError(message)

    def submit_file(
        self,
        path: Path,
        *,
        title: str | None = None,
        fmt: str | None = None,
        options: dict[str, str | None] | None = None,
        cover: Path | None = None,
        lexicon: Path | None = None,
        attempts: int = 4,
    ) -> dict[str, Any]:
        """Upload a book (and its cover). Retried on connection errors and 5xx with one
        Idempotency-Key, so a retry after a lost response returns the job the first try
        created. `options` are further form fields (chapter_files, master, subtitles,
        loudness_preset, normalize); `lexicon` is uploaded as the `lexicon` file part."""
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        fields = {"title": title, "format": fmt, **(options or {})}
        data = {k: v for k, v in fields.items() if v is not None}
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        files = {"file": (path.name, path.read_bytes())}
        if cover is not None:
            if not cover.is_file():
                raise InputError(f"cover {cover}: no such file")
            files["cover"] = (cover.name, cover.read_bytes())
        if lexicon is not None:
            if not lexicon.is_file():
                raise InputError(f"lexicon {lexicon}: no such file")
            files["lexicon"] = (lexicon.name, lexicon.read_bytes())
        for attempt in range(attempts):
            try:
                result: dict[str, Any] = self._call(
                    "POST", "/v1/jobs", files=files, data=data, headers=headers
                )
                return result
            except RetryableError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{_job_id(job_id)}")
        return result

    def jobs(self, *, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "GET", "/v1/jobs", params={"limit": limit, "offset": offset}
        )
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/jobs/{_job_id(job_id)}/cancel")
        return result

    def outputs(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{_job_id(job_id)}/outputs")
        return result

    def restore(self, job_id: str, *, days: int | None, tier: str | None) -> dict[str, Any]:
        body = {k: v for k, v in {"days": days, "tier": tier}.items() if v is not None}
        result: dict[str, Any] = self._call(
            "POST", f"/v1/jobs/{_job_id(job_id)}/restore", json=body
        )
        return result

    def download(self, url: str, dest: Path) -> int:
        """Stream one presigned URL into `dest` (written to a temp name, then renamed).

        A file:// URL (a server that keeps its files in a local folder) is copied when
        this machine can read that folder."""
        partial = dest.with_name(dest.name + ".part")
        if url.startswith("file://"):
            source = Path(unquote(urlsplit(url).path))
            if not source.is_file():
                raise InputError(
                    f"the server keeps its files in a local folder ({source.parent}) this "
                    "machine cannot read; give the server S3 storage (VOICEBATCH_STORAGE_URL)"
                )
            shutil.copyfile(source, partial)
            partial.replace(dest)
            return dest.stat().st_size
        size = 0
        try:
            with httpx.stream("GET", url, timeout=120.0) as response:
                if response.status_code != 200:
                    raise RetryableError(f"download of {dest.name} failed ({response.status_code})")
                with partial.open("wb") as sink:
                    for block in response.iter_bytes(1 << 20):
                        sink.write(block)
                        size += len(block)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise RetryableError(f"download of {dest.name} failed: {exc}") from exc
        partial.replace(dest)
        return size


def _job_id(ref: str) -> str:
    try:
        return str(uuid.UUID(ref.strip()))
    except ValueError:
        raise InputError(f"'{ref}' is not a job id (jobs are UUIDs, as submit prints)") from None


def safe_output_path(folder: Path, name: str) -> Path:
    """`folder/name` for a file name the server sent, refusing anything that escapes."""
    parts = name.split("/")
    if "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"the server sent an unsafe file name {name!r}")
    return folder.joinpath(*parts)
