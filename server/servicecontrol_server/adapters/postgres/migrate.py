"""Applying the schema migrations."""

from __future__ import annotations

from sqlalchemy import create_engine as create_sync_engine

from .database import sqlalchemy_url
from .schema import metadata


def upgrade_to_head(url: str) -> None:
    engine = create_sync_engine(sqlalchemy_url(url))
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
