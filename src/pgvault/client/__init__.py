"""The HTTP client of ``pgvault``'s everyday commands: where the service is, the token, and the calls.

Standard library only (urllib): the command line needs nothing beyond what the service installs."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

BASE = "/commandcenter/api"
DEFAULT_URL = "http://127.0.0.1:8400"


class ApiError(Exception):
    """A refusal (the service's errorMessage) or a service that cannot be reached: one line for the user."""


def config_dir() -> Path:
    root = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(root) / "pgvault"


def config_file() -> Path:
    return config_dir() / "config.json"


def load_config() -> dict[str, str]:
    try:
        data = json.loads(config_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_config(url: str, token: str, user: str) -> Path:
    """Folder 0700, file 0600, created with those modes (never readable by others, not even briefly)."""
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    path = config_file()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token, "user": user}, fh)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def remove_config() -> None:
    config_file().unlink(missing_ok=True)


def api_url(url: str) -> str:
    """``http://host:8400`` or the full API address; always the API's base."""
    url = url.rstrip("/")
    return url if url.lower().endswith(BASE) else url + BASE


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 60) -> None:
        self.url = api_url(url)
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_config(cls, url: str | None = None) -> Client:
        """PGVAULT_URL / PGVAULT_TOKEN override what `pgvault login` stored."""
        stored = load_config()
        token = os.environ.get("PGVAULT_TOKEN") or stored.get("token")
        base = url or os.environ.get("PGVAULT_URL") or stored.get("url") or DEFAULT_URL
        if not token:
            raise ApiError("not logged in: run `pgvault login` (or set PGVAULT_TOKEN)")
        return cls(base, token)

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None,
                raw: bool = False) -> Any:
        """The answer's JSON (``raw``: its bytes, for JSON lines), or ApiError."""
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authtoken"] = self.token
        req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                data_in = resp.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(_message(exc.read(), f"HTTP {exc.code}")) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach pgvault at {self.url}: {reason}") from None
        if raw:
            return data_in
        doc = json.loads(data_in) if data_in else {}
        if isinstance(doc, dict) and doc.get("errorCode") and doc.get("errorMessage"):
            raise ApiError(str(doc["errorMessage"]))  # cvpysdk-shaped refusals come with HTTP 200
        return doc

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, body, params=params or None)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params or None)

    def job(self, job_id: str | int) -> dict[str, Any]:
        return self.get(f"/Job/{job_id}")["jobs"][0]["jobSummary"]  # type: ignore[no-any-return]

    def instances(self) -> list[dict[str, Any]]:
        return list(self.get("/Instance").get("instanceProperties", []))

    def instance(self, name_or_id: str) -> dict[str, Any]:
        """An instance by its name or its id."""
        rows = self.instances()
        for row in rows:
            if str(row["instance"]["instanceId"]) == name_or_id:
                return row
        matches = [r for r in rows if r["instance"]["instanceName"].lower() == name_or_id.lower()]
        if len(matches) == 1:
            return matches[0]
        if matches:
            clients = ", ".join(f"{r['instance']['instanceId']} ({r['instance']['clientName']})" for r in matches)
            raise ApiError(f"several instances are named {name_or_id!r}: give the id, one of {clients}")
        raise ApiError(f"no instance {name_or_id!r} (`pgvault instances` lists them)")


def _message(raw: bytes, fallback: str) -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        return fallback
    if isinstance(doc, dict):
        msg = doc.get("errorMessage") or doc.get("detail")
        if msg:
            return str(msg)
    return fallback
