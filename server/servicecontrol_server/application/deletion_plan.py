"""What a delete would remove and keep: the answer of DeleteService(validate_only)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from ..domain.errors import BackendUnavailable
from ..domain.model import CustomDomain, Service
from ..settings import Settings
from .images import inventory
from .ports import ObjectStore, ObjectStoreError

log = logging.getLogger(__name__)


async def deletion_plan(
    store: ObjectStore,
    settings: Settings,
    service: Service,
    domains: list[CustomDomain],
    now: datetime,
) -> dict[str, Any]:
    """The image objects and configuration records the delete removes, the connection it
    keeps, and the certificates it retains (and until when, counted from `now`). Call it
    outside any transaction: it lists the object store."""
    objects = size = 0
    config = service.configuration
    if config and config.image_bucket and config.image_prefix:
        try:
            counted = await asyncio.to_thread(
                inventory, store, config.image_bucket, config.image_prefix
            )
        except ObjectStoreError as exc:
            # Endpoints, buckets and keys stay in the log; callers read what failed.
            log.warning("object store inventory failed", extra={"error": str(exc)})
            raise BackendUnavailable("The image store is unavailable.") from exc
        objects, size = counted.objects, counted.bytes
    expires = now + timedelta(seconds=settings.certificate_retention_seconds)
    return {
        "image_objects": objects,
        "image_bytes": size,
        "configuration_records": ["service_configuration", "compute_instance"],
        "retained_connection_arns": [service.connection_arn] if service.connection_arn else [],
        "retained_certificates": [
            {
                "domain_name": d.domain_name,
                "expires_at": expires.isoformat(),
                "certificate_id": d.certificate_id,
            }
            for d in domains
        ],
        "unlinked_domain_names": [d.domain_name for d in domains],
    }
