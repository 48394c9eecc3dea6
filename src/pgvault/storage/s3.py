"""S3-compatible object storage (AWS S3, Alibaba OSS, MinIO) through obstore.

Writes stream through obstore's buffered writer: nothing is staged on disk, at most ``part_size`` bytes
wait in memory plus ``max_concurrency`` parts in flight, and an object larger than one part becomes a
multipart upload that S3 shows under its key only once completed, which is the contract's commit. Abort
aborts the multipart upload, so no hidden parts are left to bill. Only a crash or an endpoint that is gone
can strand parts; obstore has no call to list or abort an upload it did not start, so ``incomplete_uploads``
and ``abort_upload`` use botocore for just those two requests (ListMultipartUploads, AbortMultipartUpload),
configured like the obstore store (same URL, region, addressing, keys, proxy, TLS verification); Data Aging
decides which to abort (``services/aging.py``). A bucket lifecycle rule for incomplete uploads remains the
second line (a destination removed from every plan is never swept). Reads fetch bounded byte ranges rather
than holding one GET open for the whole object: pg_restore may stop reading for minutes while it builds
an index, and a long-lived response would hit the request timeout or a dropped connection midway.

The configuration is the only source of truth: endpoint, region, addressing and signing are always passed
explicitly and keys through a credential provider, so ``AWS_*`` variables on an access node cannot
silently redirect or unsign a plan's backups. Only a destination without keys uses the node's own AWS
credentials (environment, instance profile).
"""

from __future__ import annotations

import builtins
import datetime as dt
import ipaddress
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.exceptions import PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from .base import ObjectWriter, Storage, StorageDenied, StorageError, Upload, check_key

if TYPE_CHECKING:
    from obstore import GetOptions, ObjectMeta
    from obstore.store import ClientConfig, S3Credential

log = logging.getLogger(__name__)

MAX_PARTS = 10_000  # S3's (and OSS's and MinIO's) limit on the parts of one multipart upload
_MIN_PART = 5 << 20  # S3's smallest part but the last
_ERRORS = (ObstoreError, OSError)  # obstore raises FileNotFoundError for a missing object
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_CODE = re.compile(r"<Code>([^<]+)</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
_CAUSES = re.compile(
    r"connection refused|connection reset|dns error|timed out|certificate|broken pipe|connection closed",
    re.IGNORECASE,
)
_REASONS = {
    "NoSuchBucket": "bucket {bucket!r} does not exist at {endpoint}",
    "NoSuchKey": "no such object",
    "PreconditionFailed": "the object was replaced while being read",
    "InvalidAccessKeyId": "the endpoint does not know the access key id",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "AccessDenied": "access denied: the access key may not use this bucket or prefix",
    "InvalidBucketName": "{bucket!r} is not a valid bucket name for {endpoint}",
    "PermanentRedirect": "bucket {bucket!r} is in another region than the one configured",
    "AuthorizationHeaderMalformed": "the region does not match the bucket's (or the endpoint's)",
    "XMinioStorageFull": "the storage is full",
    "QuotaExceeded": "the storage quota is exhausted",
}


@dataclass(frozen=True)
class S3Tuning:
    """Memory, timeouts and retries. The defaults bound a write to 96 MiB of buffers (one part filling,
    two in flight) while allowing objects up to 312 GiB (10,000 parts), and a read to one 32 MiB window.
    Every request moves at most one part or one window, so a whole-request timeout catches a stalled
    endpoint without cutting short a large object or a slow restore."""

    part_size: int = 32 << 20
    max_concurrency: int = 2
    read_window: int = 32 << 20
    connect_timeout: float = 10.0
    request_timeout: float = 300.0
    max_retries: int = 5
    retry_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.part_size < _MIN_PART:
            raise StorageError(f"S3 part size must be at least {_MIN_PART} bytes")
        if self.max_concurrency < 1 or self.read_window < 1:
            raise StorageError("S3 max_concurrency and read_window must be positive")


class _StaticKeys:
    """The credential provider for keys given in the configuration; its repr hides the secret."""

    def __init__(self, access_key_id: str, secret_access_key: str) -> None:
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key

    def __call__(self) -> S3Credential:
        return {"access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key,
                "token": None, "expires_at": None}

    def __repr__(self) -> str:
        return f"_StaticKeys({self.access_key_id!r}, '***')"


def endpoint_url(endpoint: str | None, region: str, bucket: str, virtual_hosted: bool) -> str:
    """The URL requests go to. obstore wants the bucket already in the host for virtual-hosted
    addressing with a custom endpoint, while users give the service endpoint (as OSS and MinIO document
    it), so the bucket is prepended here; without an endpoint it is AWS's regional one."""
    if not endpoint:
        host = f"s3.{region}.amazonaws.com"
        return f"https://{bucket}.{host}" if virtual_hosted else f"https://{host}"
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query
            or parts.fragment or parts.username or parts.password):
        raise StorageError(f"S3 endpoint {endpoint!r} must be scheme://host[:port], without a path")
    netloc = parts.netloc
    if virtual_hosted and not parts.hostname.startswith(f"{bucket}."):
        if _is_ip(parts.hostname):
            raise StorageError(f"S3 endpoint {endpoint!r} is an IP address: virtual-hosted addressing needs a "
                               "host name (use path-style)")
        netloc = f"{bucket}.{netloc}"
    return f"{parts.scheme}://{netloc}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(endpoint: str) -> bool:
    host = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}").hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    return _is_ip(host) and ipaddress.ip_address(host).is_loopback


class _S3Writer(ObjectWriter):
    def __init__(self, storage: S3Storage, key: str) -> None:
        self._storage = storage
        self._key = key
        self._limit = storage.tuning.part_size * MAX_PARTS
        self._size = 0
        self._done = False
        self._file = obstore.open_writer(storage.store, key, buffer_size=storage.tuning.part_size,
                                         max_concurrency=storage.tuning.max_concurrency)

    def write(self, data: bytes) -> None:
        if self._done:
            raise StorageError(f"{self._storage.uri(self._key)} was already committed or aborted")
        self._size += len(data)
        if self._size > self._limit:
            raise StorageError(f"{self._storage.uri(self._key)} would exceed {MAX_PARTS} parts of "
                               f"{self._storage.tuning.part_size} bytes: raise the part size")
        try:
            self._file.write(data)
        except _ERRORS as exc:
            raise self._storage._error("write", self._key, exc) from exc

    def commit(self) -> None:
        if self._done:
            raise StorageError(f"{self._storage.uri(self._key)} was already committed or aborted")
        self._done = True
        try:
            self._file.close()
        except _ERRORS as exc:
            raise self._storage._error("store", self._key, exc) from exc

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            # obstore aborts the multipart upload only when its context manager sees an exception.
            self._file.__exit__(StorageError, StorageError("aborted"), None)
        except _ERRORS as exc:
            log.warning("%s (an incomplete multipart upload may remain until Data Aging aborts it or the "
                        "bucket's lifecycle rule removes it)",
                        self._storage._error("abort the upload of", self._key, exc))


class S3Storage(Storage):
    """A bucket, or a folder (``prefix``) inside one, on any S3-compatible endpoint."""

    remote = True

    def __init__(self, bucket: str, *, region: str | None = None, endpoint: str | None = None, prefix: str = "",
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 virtual_hosted: bool = False, allow_http: bool = False, proxy_url: str | None = None,
                 tuning: S3Tuning | None = None) -> None:
        if not _BUCKET.match(bucket):
            raise StorageError(f"invalid S3 bucket name {bucket!r}")
        if bool(access_key_id) != bool(secret_access_key):
            raise StorageError("give both the access key id and the secret access key, or neither")
        self.bucket = bucket
        self.region = region or "us-east-1"
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.tuning = tuning or S3Tuning()
        self.endpoint_url = endpoint_url(endpoint, self.region, bucket, virtual_hosted)
        if self.endpoint_url.startswith("http://") and not allow_http:
            raise StorageError(f"S3 endpoint {self.endpoint_url} is plain HTTP; allow it explicitly or use HTTPS")
        self.virtual_hosted = virtual_hosted
        self._access_key_id = access_key_id
        self._secret = secret_access_key
        self._proxy_url = proxy_url
        self._botocore: Any = None  # built on first use: only the sweep of unfinished uploads needs it
        t = self.tuning
        client: ClientConfig = {
            "allow_http": allow_http,
            "connect_timeout": dt.timedelta(seconds=t.connect_timeout),
            "timeout": dt.timedelta(seconds=t.request_timeout),
        }
        if proxy_url:
            client["proxy_url"] = proxy_url
        keys = _StaticKeys(access_key_id, secret_access_key) if access_key_id and secret_access_key else None
        try:
            self.store = S3Store(
                bucket, prefix=self.prefix or None, endpoint=self.endpoint_url, region=self.region,
                aws_endpoint_url_s3=self.endpoint_url,  # else AWS_ENDPOINT_URL_S3 would override `endpoint`
                virtual_hosted_style_request=virtual_hosted, skip_signature=False, unsigned_payload=False,
                request_payer=False, credential_provider=keys, client_options=client,
                retry_config={"max_retries": t.max_retries, "retry_timeout": dt.timedelta(seconds=t.retry_timeout)},
            )
        except _ERRORS as exc:
            raise StorageError(self._scrub(f"cannot configure S3 storage {self.location}: {exc}")) from None

    @classmethod
    def from_config(cls, config: dict[str, Any], secret: dict[str, Any], *, tuning: S3Tuning | None = None
                    ) -> S3Storage:
        """A plan destination's configuration (``endpoint``, ``region``, ``bucket``, ``prefix``,
        ``virtualHosted``, optional ``allowHttp`` and ``proxyUrl``) and its opened secret
        (``accessKeyId``, ``secretAccessKey``; empty: the access node's own AWS credentials).
        Plain HTTP is allowed to loopback endpoints without asking, since nothing leaves the host."""
        if not config.get("bucket"):
            raise StorageError("an S3 destination needs a bucket")
        endpoint = config.get("endpoint") or None
        return cls(
            config["bucket"], region=config.get("region"), endpoint=endpoint,
            prefix=config.get("prefix") or "", access_key_id=secret.get("accessKeyId"),
            secret_access_key=secret.get("secretAccessKey"), virtual_hosted=bool(config.get("virtualHosted")),
            allow_http=bool(config.get("allowHttp")) or (endpoint is not None and _is_loopback(endpoint)),
            proxy_url=config.get("proxyUrl") or None, tuning=tuning,
        )

    def __repr__(self) -> str:
        return f"S3Storage({self.location!r}, endpoint={self.endpoint_url!r})"

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def uri(self, key: str) -> str:
        return f"{self.location}/{check_key(key)}"

    def writer(self, key: str) -> ObjectWriter:
        return _S3Writer(self, check_key(key))

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        meta = self._head("read", check_key(key))
        if meta is None:
            raise self._explained("read", key, FileNotFoundError(key))
        size, etag = meta["size"], meta["e_tag"]
        window = max(self.tuning.read_window, chunk_size)
        for start in range(0, size, window):
            end = min(start + window, size)
            options: GetOptions = {"range": (start, end)}
            if etag:
                options["if_match"] = etag  # every window from the same version of the object
            try:
                data = obstore.get(self.store, key, options=options).bytes()
            except _ERRORS as exc:
                raise self._error("read", key, exc) from exc
            view = memoryview(data)
            for offset in range(0, len(view), chunk_size):
                yield bytes(view[offset : offset + chunk_size])

    def _head(self, action: str, key: str) -> ObjectMeta | None:
        """The object's metadata, or None if there is no such object."""
        try:
            return obstore.head(self.store, key)
        except FileNotFoundError:
            return None
        except (PermissionDeniedError, UnauthenticatedError) as exc:
            raise self._explained(action, key, exc) from exc
        except _ERRORS as exc:
            raise self._error(action, key, exc) from exc

    def _explained(self, action: str, key: str, exc: BaseException) -> StorageError:
        """A HEAD answer has no body, so it cannot say why (a missing bucket looks like a missing object,
        a wrong secret like a missing right); a one-byte GET gets the same refusal with its reason."""
        try:
            obstore.get(self.store, key, options={"range": (0, 1)})
        except _ERRORS as probe:
            return self._error(action, key, probe)
        return self._error(action, key, exc)

    def exists(self, key: str) -> bool:
        return self._head("look up", check_key(key)) is not None

    def folders(self, prefix: str) -> list[str]:
        check_key(prefix)
        try:
            listing = obstore.list_with_delimiter(self.store, prefix=prefix)
        except _ERRORS as exc:
            raise self._error("list", prefix, exc) from exc
        return sorted(p.rstrip("/") for p in listing["common_prefixes"])

    def list(self, prefix: str) -> list[str]:
        check_key(prefix)
        try:
            return sorted(meta["path"] for batch in obstore.list(self.store, prefix=prefix) for meta in batch)
        except _ERRORS as exc:
            raise self._error("list", prefix, exc) from exc

    def delete(self, key: str) -> None:
        try:
            obstore.delete(self.store, check_key(key))
        except FileNotFoundError:
            return
        except _ERRORS as exc:
            raise self._error("delete", key, exc) from exc

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        if keys:
            try:
                obstore.delete(self.store, keys)  # bulk DeleteObjects, 1,000 keys a request
            except _ERRORS as exc:
                raise self._error("delete", prefix, exc) from exc
        return len(keys)

    # -- unfinished multipart uploads, through botocore (obstore has no call for them) ---------------
    def _api(self) -> Any:
        """A botocore S3 client that sends its requests where the obstore store sends its own: the same
        URL (virtual-hosted: botocore puts the bucket in front of the service host, as ``endpoint_url``
        did), region, SigV4 keys, proxy and certificate checks; an explicit endpoint, region and
        addressing, so ``AWS_*`` variables and config files cannot redirect it."""
        if self._botocore is None:
            import botocore.session
            from botocore.config import Config

            host = urlsplit(self.endpoint_url)
            service = self.endpoint_url
            if self.virtual_hosted and (host.hostname or "").startswith(f"{self.bucket}."):
                service = f"{host.scheme}://{host.netloc.removeprefix(f'{self.bucket}.')}"
            t = self.tuning
            config = Config(
                region_name=self.region, signature_version="s3v4",
                s3={"addressing_style": "virtual" if self.virtual_hosted else "path"},
                connect_timeout=t.connect_timeout, read_timeout=t.request_timeout,
                retries={"total_max_attempts": t.max_retries + 1, "mode": "standard"},
                proxies={"http": self._proxy_url, "https": self._proxy_url} if self._proxy_url else None,
                user_agent_extra="pgvault",
            )
            # (config name, environment variables, default, conversion): the default trust roots whatever
            # AWS_CA_BUNDLE says; with keys, nothing from the node's AWS profiles either
            isolated: dict[str, tuple[str | None, str | None, str | None, None]] = {
                "ca_bundle": (None, None, None, None)}
            keys: dict[str, str] = {}
            if self._access_key_id and self._secret:
                keys = {"aws_access_key_id": self._access_key_id, "aws_secret_access_key": self._secret}
                isolated |= {"profile": (None, None, None, None), "config_file": (None, None, os.devnull, None),
                             "credentials_file": (None, None, os.devnull, None)}
            session = botocore.session.Session(session_vars=isolated)
            self._botocore = session.create_client("s3", endpoint_url=service, region_name=self.region,
                                                   use_ssl=service.startswith("https://"), verify=True,
                                                   config=config, **keys)
        return self._botocore

    def incomplete_uploads(self, prefix: str) -> builtins.list[Upload]:
        check_key(prefix)
        under = f"{self.prefix}/{prefix}/" if self.prefix else f"{prefix}/"
        uploads: builtins.list[Upload] = []
        try:
            pages = self._api().get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=under)
            for page in pages:
                for u in page.get("Uploads", []):
                    key = u["Key"]
                    if not key.startswith(under):  # the endpoint's filter, trusted only this far
                        continue
                    uploads.append(Upload(key=key.removeprefix(f"{self.prefix}/") if self.prefix else key,
                                          upload_id=u["UploadId"],
                                          initiated=u["Initiated"].astimezone(dt.UTC)))
        except Exception as exc:  # botocore's, imported lazily: _boto_error re-raises any other
            raise self._boto_error("list the unfinished uploads under", prefix, exc) from None
        return uploads

    def abort_upload(self, upload: Upload) -> None:
        check_key(upload.key)
        key = f"{self.prefix}/{upload.key}" if self.prefix else upload.key
        try:
            self._api().abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload.upload_id)
        except Exception as exc:  # as in incomplete_uploads
            if _boto_code(exc) == "NoSuchUpload":
                return  # aborted or completed meanwhile
            raise self._boto_error("abort the unfinished upload of", upload.key, exc) from None

    def _boto_error(self, action: str, key: str, exc: BaseException) -> StorageError:
        from botocore.exceptions import BotoCoreError, NoCredentialsError

        code = _boto_code(exc)
        if code is not None:
            known = _REASONS.get(code)
            message = getattr(exc, "response", {}).get("Error", {}).get("Message")
            reason = (known.format(bucket=self.bucket, endpoint=self.endpoint_url) if known
                      else f"{code}: {message}" if message else code)
        elif isinstance(exc, NoCredentialsError):
            reason = "no keys are configured and the node has no AWS credentials"
        elif isinstance(exc, BotoCoreError):
            cause = _CAUSES.search(str(exc))
            reason = f"cannot reach {self.endpoint_url}" + (f" ({cause.group(0).lower()})" if cause else "")
        else:
            raise exc  # a bug, not an answer of the endpoint
        kind = StorageDenied if code == "AccessDenied" else StorageError
        return kind(self._scrub(f"cannot {action} {self.location}/{key}: {reason}"))

    def _error(self, action: str, key: str, exc: BaseException) -> StorageError:
        """The one place an obstore error becomes a StorageError: what failed, where, and why in words
        an operator can act on, never with the secret key in it."""
        return StorageError(self._scrub(f"cannot {action} {self.location}/{key}: {self._reason(exc)}"))

    def _reason(self, exc: BaseException) -> str:
        text = str(exc)
        code = _S3_CODE.search(text)
        if code:
            known = _REASONS.get(code.group(1))
            if known:
                return known.format(bucket=self.bucket, endpoint=self.endpoint_url)
            message = _S3_MESSAGE.search(text)
            return f"{code.group(1)}: {message.group(1)}" if message else code.group(1)
        if isinstance(exc, FileNotFoundError):
            return "no such object"
        if "error sending request" in text or "HTTP error" in text:
            cause = _CAUSES.search(text)
            return f"cannot reach {self.endpoint_url}" + (f" ({cause.group(0).lower()})" if cause else "")
        status = re.search(r"status code: (\d{3}[^:<\n]*)", text)
        if status:
            return f"{self.endpoint_url} answered {status.group(1).strip()}"
        return text.split("\n", 1)[0][:300]

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def _boto_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError (None for any other exception)."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code) if code else None
