"""The web console spoken to as a browser does, without one: a cookie jar, its forms and their CSRF values.
(tests/test_console_browser.py drives a real browser; this is for what a browser never sends.)"""

from __future__ import annotations

import re
from typing import Any

import httpx

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "the page has no form with a CSRF value"
    return m.group(1)


class Console:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60, follow_redirects=False)
        self.csrf = ""

    def login(self, username: str, password: str) -> httpx.Response:
        form = self.http.get("/login")
        r = self.http.post("/login", data={"username": username, "password": password, "csrf": csrf_of(form.text),
                                           "next": "/"})
        if r.status_code == 303:
            self.csrf = csrf_of(self.http.get("/").text)  # (the logout form of every page carries it)
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: str | None = None,
             **kw: Any) -> httpx.Response:
        return self.http.post(path, data={"csrf": self.csrf if csrf is None else csrf, **(data or {})}, **kw)

    def close(self) -> None:
        self.http.close()
