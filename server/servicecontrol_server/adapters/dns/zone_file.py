"""The default DnsValidator: a zone file the operator maintains, standing in for the
public DNS this process cannot query.

One record a line: `name CNAME value`, optionally with a TTL and class between the name
and the type as in a master file (`name 300 IN CNAME value`). Names compare without
case and without the trailing dot; `;` and `#` start comments. Only CNAME records count.
The file is read again whenever it changes, so the operator can edit it while the server
runs."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class ZoneFileValidator:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._records: dict[str, set[str]] = {}

    async def check(self, record_name: str, record_value: str) -> bool | None:
        values = self._load().get(_normal(record_name))
        if not values:
            return None
        return _normal(record_value) in values

    def _load(self) -> dict[str, set[str]]:
        if self.path is None:
            return {}
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime, stat.st_size)
            if stamp != self._stamp:
                self._records = parse_zone(self.path.read_text(encoding="utf-8"))
                self._stamp = stamp
        except OSError as exc:
            # A missing or unreadable file validates nothing; it is not an error to act on.
            log.warning(
                "cannot read the DNS zone file", extra={"path": str(self.path), "error": str(exc)}
            )
            self._records, self._stamp = {}, None
        return self._records


def parse_zone(content: str) -> dict[str, set[str]]:
    records: dict[str, set[str]] = {}
    for raw in content.splitlines():
        line = raw.split(";", 1)[0].split("#", 1)[0]
        tokens = line.split()
        types = [i for i, token in enumerate(tokens) if token.upper() == "CNAME"]
        if not types or types[0] == 0 or types[0] + 1 >= len(tokens):
            continue
        name, value = tokens[0], tokens[types[0] + 1]
        records.setdefault(_normal(name), set()).add(_normal(value))
    return records


def _normal(name: str) -> str:
    return name.strip().rstrip(".").lower()
