"""HTTP/JSON client of the REST API for the ``gpunas-scheduler`` user commands.

Built on the standard library's ``urllib.request`` so that a CLI call imports neither the server's
stack (SQLAlchemy, FastAPI) nor an HTTP library that costs more to import than one
request takes (``bench/bench_cli.py`` times a ``jobs submit``; the aim is 150 ms).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


class ClientError(Exception):
    """The server could not be reached or answered with an error; the message says which."""


class Client:
    def __init__(self, url: str, token: str, ca_file: Path | None = None, timeout_s: float = 30) -> None:
        self.base_url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.context = ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else None

    def call(
        self, method: str, path: str, *, json_body: Any = None, params: list[tuple[str, Any]] | None = None
    ) -> Any:
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=self.context) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise ClientError(_error_message(exc.code, exc.read())) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise ClientError(f"cannot reach {self.base_url}: {reason}") from None


def _error_message(status: int, raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return f"HTTP {status}: {raw[:200].decode(errors='replace')}"
    if not isinstance(body, dict):
        return f"HTTP {status}: {body}"
    msg = str(body.get("error") or body.get("detail") or raw.decode(errors="replace"))
    if body.get("fields"):
        msg += "".join(f"\n  {f['field']}: {f['message']}" for f in body["fields"])
    return f"HTTP {status}: {msg}"
