"""What a delete would remove and keep: the answer of DeleteService(validate_only)."""

from __future__ import annotations

import itertools
import logging
from datetime import datetime, timedelta
from typing import Any

from ..domain.errors import BackendUnavailable
from ..domain.model import CustomDomain, Service
from ..settings import Settings
from .images import Inventory, copy_manifest_key, manifest_inventory
from .offload import off_loop
from .ports import ObjectNotFound, ObjectStore, ObjectStoreError

log = logging.getLogger(__name__)


def estimate_copy(store: ObjectStore, bucket: str, prefix: str, cap: int) -> Inventory:
    """The image copy under prefix, estimated at bounded cost: from its manifest (one
    read), or, when the copy has none (it was never finished), from a listing of at most
    `cap` objects. Either way an estimate: leftovers beside the manifest's image, or
    objects past the cap, are not counted (the delete's report has the exact count)."""
    try:
        body = store.get_bytes(bucket, copy_manifest_key(prefix))
    except ObjectNotFound:
        body = None
    if body is not None:
        try:
            return manifest_inventory(body, prefix)
        except ValueError:
            log.warning("image copy manifest unreadable; counting a bounded listing")
    objects = size = 0
    for info in itertools.islice(store.list_objects(bucket, prefix), cap):
        objects += 1
        size += info.size
    return Inventory(objects=objects, bytes=size)


async def deletion_plan(
    store: ObjectStore,
    settings: Settings,
    service: Service,
    domains: list[CustomDomain],
    now: datetime,
) -> dict[str, Any]:
    """The image objects and configuration records the delete removes, the connection it
    keeps, and the certificates it retains (and until when, counted from `now`). Call it
    outside any transaction: it reads the object store (a bounded amount: the image
    counts are an estimate, and the plan says so)."""
    objects = size = 0
    estimated = False
    config = service.configuration
    if config and config.image_bucket and config.image_prefix:
        try:
            counted = await off_loop(
                store,
                estimate_copy,
                store,
                config.image_bucket,
                config.image_prefix,
                settings.deletion_plan_listing_cap,
            )
        except ObjectStoreError as exc:
            # Endpoints, buckets and keys stay in the log; callers read what failed.
            log.warning("object store inventory failed", extra={"error": str(exc)})
            raise BackendUnavailable("The image store is unavailable.") from exc
        objects, size, estimated = counted.objects, counted.bytes, True
    expires = now + timedelta(seconds=settings.certificate_retention_seconds)
    return {
        "image_objects": objects,
        "image_bytes": size,
        "estimated": estimated,
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
