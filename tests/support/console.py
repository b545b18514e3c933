"""A signed-in console client: aiohttp against the console a harness serves."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

CSRF_RE = re.compile(r'data-csrf="([^"]+)"')


class ConsoleClient:
    def __init__(self, base: str) -> None:
        self.base = base
        # The console's cookie is for 127.0.0.1: an IP host needs the unsafe jar.
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(ssl=False),
        )
        self.csrf = ""

    async def close(self) -> None:
        await self.http.close()

    async def sign_in(self, token: str) -> aiohttp.ClientResponse:
        answer = await self.post("/signin", {"token": token}, csrf=False)
        if answer.status == 200 and str(answer.url).endswith("/services"):
            self.csrf = csrf_of(await answer.text())
        return answer

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        answer = await self.http.get(self.base + path, **kwargs)
        await answer.read()
        return answer

    async def post(
        self, path: str, data: dict[str, str], *, csrf: bool = True, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        form = dict(data)
        if csrf:
            form.setdefault("csrf", self.csrf)
        answer = await self.http.post(self.base + path, data=form, **kwargs)
        await answer.read()
        return answer


def csrf_of(page: str) -> str:
    found = CSRF_RE.search(page)
    assert found, "the page carries no CSRF token"
    return found.group(1)
