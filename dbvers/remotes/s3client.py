"""The one S3 connection: a lazily made boto3 client, retries with backoff, one-line errors.

L3. Every request of the S3 backends goes through :class:`S3Connection`, which
* creates the boto3 client at first use (so environment, profile and endpoint
  set after import are honoured) through boto3's usual credential chain — dbvers
  never stores a credential; the remote keeps only endpoint, region and profile;
* retries network errors, 5xx and throttling with exponential backoff and full
  jitter (its own loop: botocore's standard mode runs out of "retry quota" in a
  long outage, litestream's lesson), then raises ``RemoteUnreachableError``;
* turns the answers the backends act on into plain exceptions
  (:class:`PreconditionFailed` for 412, :class:`WriteConflict` for 409,
  a ``None`` result for 404) and every other failure into a one-line
  ``RemoteError`` — never a botocore traceback.

Conditional writes: ``put(..., if_none_match=True)`` sends ``If-None-Match: *``
(create only), ``put(..., if_match=etag)`` sends ``If-Match``; ``delete(...,
if_match=etag)`` too, falling back to a plain delete where the endpoint does not
implement conditional deletes (the value was compared just before).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from ..errors import (
    MissingDependencyError,
    RemoteAccessError,
    RemoteDamagedError,
    RemoteError,
    RemoteNotFoundError,
    RemoteUnreachableError,
)

T = TypeVar("T")

#: Attempts per request (the first one included) and the backoff between them, in seconds.
ATTEMPTS = 5
BACKOFF = 0.2
MAX_BACKOFF = 5.0
TIMEOUT = 10.0
_RETRY_CODES = frozenset({"SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "InternalError",
                          "ServiceUnavailable", "Throttling", "ThrottlingException", "OperationAborted"})
_DENIED = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                     "InvalidToken", "AllAccessDisabled", "403"})


_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()


class PreconditionFailed(Exception):
    """HTTP 412: the key was not what the condition said (lost a race)."""


class WriteConflict(Exception):
    """HTTP 409: another conditional write to the key was in flight; try again."""


class NotImplementedByEndpoint(Exception):
    """HTTP 501 (or a refusal of a header): the endpoint lacks a feature."""


@dataclass(frozen=True)
class Entry:
    key: str  # relative to the remote's prefix
    size: int
    mtime: float


def _boto() -> tuple[Any, Any, Any]:
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
    except ImportError:
        raise MissingDependencyError("boto3", "s3") from None
    return boto3, botocore.config, botocore.exceptions


def _streaming_errors(exc: Any) -> tuple[type[BaseException], ...]:
    """Errors of a body cut off mid-transfer (and a managed upload's wrapper): worth another try.

    Besides botocore's own, what its HTTP stack lets through while it reads a body: urllib3's
    ``ProtocolError`` (a reset mid-response, an error response's body included) and
    ``http.client``'s ``IncompleteRead`` (fewer bytes than the Content-Length said).
    """
    import urllib3.exceptions

    found = [getattr(exc, n) for n in ("ResponseStreamingError", "IncompleteReadError") if hasattr(exc, n)]
    found += [urllib3.exceptions.HTTPError, http.client.HTTPException]
    try:
        from boto3.exceptions import S3UploadFailedError

        found.append(S3UploadFailedError)
    except ImportError:
        pass
    return tuple(found)


class ResumingBody(io.RawIOBase):
    """A GET's body that picks up where a cut-off transfer stopped: a ranged GET from the last
    byte read, of the same ETag (objects never change; a changed one fails, not mixes). A body
    shorter than its Content-Length is a cut-off too. Reads that keep failing end, after the
    connection's attempts, in the one-line RemoteUnreachableError."""

    def __init__(self, conn: S3Connection, rel: str, response: dict[str, Any]) -> None:
        super().__init__()
        self._conn, self._rel = conn, rel
        self._body, self._etag = response["Body"], response["ETag"]
        self._size, self._pos = int(response.get("ContentLength", -1)), 0
        self.reopened = 0  # how many times a cut-off transfer was picked up again

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        _, _, exc = _boto()
        reason = ""
        for attempt in range(self._conn.attempts):  # the reads and the re-opens share the attempts
            try:
                if attempt:
                    time.sleep(backoff_delay(attempt - 1, self._conn.backoff))
                    self._reopen()
                data: bytes = self._body.read() if n is None or n < 0 else self._body.read(n)
                if not data and n != 0 and 0 <= self._pos < self._size:
                    raise http.client.IncompleteRead(b"", self._size - self._pos)
                self._pos += len(data)
                return data
            except exc.ClientError as e:  # of the ranged GET
                code, status = _code(e)
                if status == 412 or code == "PreconditionFailed":
                    raise RemoteDamagedError(self._conn.url, f"{self._rel} changed while it was being "
                                                             "downloaded (objects never change)") from None
                if status < 500 and code not in _RETRY_CODES:
                    raise self._conn.refusal(f"GET {self._rel}", code, status, e) from None
                reason = f"GET {self._rel}: HTTP {status} {code}"
            except (exc.HTTPClientError, exc.ConnectionError, OSError, *_streaming_errors(exc)) as e:
                reason = f"GET {self._rel}: {_first_line(e)}"
        raise RemoteUnreachableError(self._conn.url, reason, self._conn.attempts)

    def _reopen(self) -> None:
        """The rest of the object, from the first byte not yet read (one request: the caller retries)."""
        with contextlib.suppress(Exception):
            self._body.close()
        self.reopened += 1
        conn = self._conn
        self._body = conn.client.get_object(Bucket=conn.bucket, Key=conn.key(self._rel),
                                            Range=f"bytes={self._pos}-", IfMatch=self._etag)["Body"]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        super().close()


def backoff_delay(attempt: int, base: float) -> float:
    """Full jitter: a random wait up to base * 2^attempt, capped."""
    return random.uniform(0, min(MAX_BACKOFF, base * (2 ** attempt)))


class S3Connection:
    """One bucket and prefix on one endpoint; thread-safe (boto3 clients are)."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, profile: str | None = None,
                 attempts: int = ATTEMPTS, backoff: float = BACKOFF, timeout: float = TIMEOUT) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self.profile = profile
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.timeout = timeout
        self._client: Any = None
        self._client_pid = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def rel(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key

    # -- the client ------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                self._client_pid = os.getpid()
                # The pid too: a forked child must not share its parent's connection pool.
                key = (os.getpid(), self.endpoint_url, self.region, self.profile, self.timeout,
                       tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))))
                with _CLIENTS_LOCK:
                    # Making a client loads botocore's service model (~0.3 s): one per configuration
                    # and process. The environment is part of the key, so credentials or a region
                    # set after an earlier remote was used are still honoured.
                    if key not in _CLIENTS:
                        _CLIENTS[key] = self._make_client()
                    self._client = _CLIENTS[key]
            return self._client

    def _make_client(self) -> Any:
        boto3, config, exc = _boto()
        options: dict[str, Any] = {"retries": {"total_max_attempts": 1},  # our loop retries
                                   "connect_timeout": self.timeout, "read_timeout": self.timeout,
                                   "max_pool_connections": 32}
        if self.endpoint_url:
            # S3-compatible stores (MinIO, Ceph, older R2) want path-style addressing and
            # refuse the checksum trailers newer botocore sends by default (litestream does the same).
            options["s3"] = {"addressing_style": "path"}
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        try:
            cfg = config.Config(**options)
        except TypeError:  # an older botocore without the checksum options
            options.pop("request_checksum_calculation", None)
            options.pop("response_checksum_validation", None)
            cfg = config.Config(**options)
        try:
            session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
            return session.client("s3", endpoint_url=self.endpoint_url, config=cfg)
        except exc.ProfileNotFound:
            raise RemoteAccessError(self.url, f"no AWS profile named {self.profile!r}; "
                                              "check ~/.aws/config or --profile") from None
        except (exc.BotoCoreError, ValueError) as e:
            raise RemoteError(self.url, f"cannot set up the S3 client ({_first_line(e)}); check --endpoint-url "
                                        "(http(s)://host[:port]), --region and --profile") from None

    # -- the retry loop ---------------------------------------------------------------------
    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run *fn* (one request, or one managed transfer), retrying what is worth retrying."""
        _, _, exc = _boto()
        reason = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(backoff_delay(attempt - 1, self.backoff))
            try:
                return fn()
            except exc.ClientError as e:
                code, status = _code(e)
                if status == 412 or code == "PreconditionFailed":
                    raise PreconditionFailed(what) from None
                if status == 409 and code != "BucketAlreadyOwnedByYou":
                    raise WriteConflict(what) from None
                if status == 501 or code == "NotImplemented":
                    raise NotImplementedByEndpoint(what) from None
                if status >= 500 or code in _RETRY_CODES:
                    reason = f"{what}: HTTP {status} {code}"
                    continue
                raise self.refusal(what, code, status, e) from None
            except (exc.NoCredentialsError, exc.PartialCredentialsError):
                raise RemoteAccessError(self.url, "no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                                                  "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or --profile") from None
            except (exc.HTTPClientError, exc.ConnectionError, OSError, *_streaming_errors(exc)) as e:
                reason = _first_line(e)
                continue
            except exc.BotoCoreError as e:
                raise RemoteError(self.url, f"{what} failed ({_first_line(e)})") from None
        raise RemoteUnreachableError(self.url, reason, self.attempts)

    def refusal(self, what: str, code: str, status: int, e: Exception) -> RemoteError:
        """The one-line error for an answer that retrying won't change (4xx)."""
        if code == "NoSuchBucket":
            return RemoteNotFoundError(self.url, f"the bucket {self.bucket!r} does not exist; create it first")
        if code in _DENIED or status == 403:
            return RemoteAccessError(self.url, f"access denied ({code or status}) for {what}; "
                                               "check the credentials, --profile and the bucket policy")
        return RemoteError(self.url, f"{what} failed: {code or status} ({_first_line(e)})")

    # -- requests ---------------------------------------------------------------------------
    def get(self, rel: str, limit: int) -> tuple[bytes, str] | None:
        """(body, etag) of a small key; None when it does not exist. At most *limit* + 1 bytes
        are read: a key longer than what it may hold (a ref, a marker) comes back longer than
        *limit*, for the caller to refuse, and a hostile remote can't make a read fill memory."""
        def fn() -> tuple[bytes, str] | None:
            try:
                r = self.client.get_object(Bucket=self.bucket, Key=self.key(rel))
            except self.client.exceptions.NoSuchKey:
                return None
            with contextlib.closing(r["Body"]) as body:
                data = body.read(limit + 1)
            if len(data) <= limit and len(data) != r.get("ContentLength", len(data)):
                raise http.client.IncompleteRead(data, r["ContentLength"] - len(data))  # cut short: again
            return data, r["ETag"]
        return self.call(f"GET {rel}", fn)

    def get_range(self, rel: str, size: int) -> bytes | None:
        def fn() -> bytes | None:
            try:
                r = self.client.get_object(Bucket=self.bucket, Key=self.key(rel), Range=f"bytes=0-{size - 1}")
            except self.client.exceptions.NoSuchKey:
                return None
            body: bytes = r["Body"].read()
            return body
        return self.call(f"GET {rel}", fn)

    def open(self, rel: str) -> IO[bytes] | None:
        """A streaming body (file-like) that resumes a transfer cut off midway; None when the
        key does not exist."""
        def fn() -> dict[str, Any] | None:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self.key(rel))  # type: ignore[no-any-return]
            except self.client.exceptions.NoSuchKey:
                return None
        r = self.call(f"GET {rel}", fn)
        return None if r is None else ResumingBody(self, rel, r)  # type: ignore[return-value]

    def head(self, rel: str) -> dict[str, Any] | None:
        _, _, exc = _boto()

        def fn() -> dict[str, Any] | None:
            try:
                return self.client.head_object(Bucket=self.bucket, Key=self.key(rel))  # type: ignore[no-any-return]
            except exc.ClientError as e:
                if _code(e)[1] == 404:
                    return None
                raise
        return self.call(f"HEAD {rel}", fn)

    def put(self, rel: str, body: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> str:
        """Write a small key; returns its new ETag. PreconditionFailed / WriteConflict as the condition says."""
        extra: dict[str, str] = {}
        if if_match is not None:
            extra["IfMatch"] = if_match
        if if_none_match:
            extra["IfNoneMatch"] = "*"

        def fn() -> str:
            r = self.client.put_object(Bucket=self.bucket, Key=self.key(rel), Body=body, **extra)
            return r.get("ETag", "")  # type: ignore[no-any-return]
        return self.call(f"PUT {rel}", fn)

    def delete(self, rel: str, *, if_match: str | None = None) -> None:
        if if_match is not None:
            try:
                self.call(f"DELETE {rel}", lambda: self.client.delete_object(
                    Bucket=self.bucket, Key=self.key(rel), IfMatch=if_match))
                return
            except NotImplementedByEndpoint:
                pass  # no conditional deletes here: the caller compared just before
        self.call(f"DELETE {rel}", lambda: self.client.delete_object(Bucket=self.bucket, Key=self.key(rel)))

    def upload_file(self, path: Path, rel: str) -> None:
        """A managed (multipart, parallel) upload: the same code path as boto3's ``upload_file``."""
        self.call(f"PUT {rel}", lambda: self.client.upload_file(str(path), self.bucket, self.key(rel)))

    def upload_fileobj(self, f: IO[bytes], start: int, rel: str) -> None:
        """``upload_file`` from an open file, its bytes from *start* on (rewound for each attempt)."""
        def fn() -> None:
            f.seek(start)
            self.client.upload_fileobj(f, self.bucket, self.key(rel))
        self.call(f"PUT {rel}", fn)

    def download_fileobj(self, rel: str, out: IO[bytes]) -> bool:
        """A managed (parallel ranged) download into *out*; False when the key does not exist."""
        def fn() -> bool:
            out.seek(0)
            out.truncate()
            try:
                self.client.download_fileobj(self.bucket, self.key(rel), out)
            except self.client.exceptions.ClientError as e:
                if _code(e)[1] == 404:
                    return False
                raise
            return True
        return self.call(f"GET {rel}", fn)

    def list(self, rel_prefix: str, *, delimiter: str | None = None, limit: int | None = None) -> Iterator[Entry]:
        """Keys under *rel_prefix* (sorted, as S3 lists them); with *delimiter*, one level only."""
        kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.key(rel_prefix)}
        if delimiter:
            kw["Delimiter"] = delimiter
        if limit:
            kw["MaxKeys"] = limit
        token: str | None = None
        while True:
            page_kw = dict(kw, ContinuationToken=token) if token else kw
            page = self.call(f"LIST {rel_prefix}", lambda kw=page_kw: self.client.list_objects_v2(**kw))
            for item in page.get("Contents", []):
                yield Entry(self.rel(item["Key"]), item["Size"], item["LastModified"].timestamp())
            token = page.get("NextContinuationToken")
            if not token or limit:
                return


def _code(e: Any) -> tuple[str, int]:
    err = e.response.get("Error", {})
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(err.get("Code", "")), int(status or 0)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:160]
