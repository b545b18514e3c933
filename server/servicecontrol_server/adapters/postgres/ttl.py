"""Named SQL of the TTL reaper: everything kept for a while and then purged.

Every purge is one bounded batch: `WITH doomed AS MATERIALIZED (SELECT … LIMIT n FOR
UPDATE SKIP LOCKED) DELETE … USING doomed`. The materialized CTE runs exactly once, so a
batch never locks more than n rows (see jobqueue.COMPLETE_AND_CLAIM for why not `IN (SELECT …)`);
SKIP LOCKED lets several reapers (one per replica) work at once, each deleting rows the
others do not hold, so nothing is deleted or counted twice; and a row someone else is
changing (a certificate being linked again, say) is skipped rather than waited for.
FOR UPDATE also re-checks the WHERE clause against a row changed since the snapshot, so
a record that stopped qualifying (linked again, no longer expired) is not deleted.

Expiry and age are judged by the database clock (`now()`) only. An expiry instant is
inclusive (`expires_at <= now()` is expired); a retention age is exclusive (a row exactly
`retention` seconds old is kept)."""

from __future__ import annotations

from sqlalchemy import text

# Unlinked certificate records past their retention window. `service_id IS NULL` and the
# NOT EXISTS say the same thing (a linked record has an association); both are checked so
# that a record some association still references is never a candidate.
PURGE_EXPIRED_CERTIFICATES = text(
    """
    WITH doomed AS MATERIALIZED (
        SELECT c.certificate_id
        FROM certificates AS c
        WHERE c.expires_at <= now()
          AND c.service_id IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM custom_domains AS d WHERE d.certificate_id = c.certificate_id
          )
        ORDER BY c.expires_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM certificates AS c
    USING doomed
    WHERE c.certificate_id = doomed.certificate_id
    RETURNING c.certificate_id, c.account_id, c.certificate_arn, c.domain_name, c.expires_at
    """
)

# The same rule for one record, for an association that finds its domain's record
# expired but not yet reaped: it purges it (in its own transaction, holding the row lock)
# and starts afresh, exactly as if the reaper had come first.
PURGE_CERTIFICATE_IF_EXPIRED = text(
    """
    DELETE FROM certificates AS c
    WHERE c.certificate_id = :certificate_id
      AND c.expires_at <= now()
      AND c.service_id IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM custom_domains AS d WHERE d.certificate_id = c.certificate_id
      )
    RETURNING c.*
    """
)

# Deleted connections past their tombstone's purge_at (served by ix_connections_purge_at).
PURGE_CONNECTION_TOMBSTONES = text(
    """
    WITH doomed AS MATERIALIZED (
        SELECT connection_id
        FROM connections
        WHERE status = 'DELETED' AND purge_at <= now()
        ORDER BY purge_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM connections AS c
    USING doomed
    WHERE c.connection_id = doomed.connection_id
    RETURNING c.connection_id, c.account_id, c.connection_arn, c.connection_name
    """
)

# Deleted services past their tombstone's purge_at (served by ix_services_purge_at). The
# configuration rows cascade; operations and failed jobs have no foreign key and are
# removed by the two statements below in the same transaction.
PURGE_SERVICE_TOMBSTONES = text(
    """
    WITH doomed AS MATERIALIZED (
        SELECT service_id
        FROM services
        WHERE status = 'DELETED' AND purge_at <= now()
        ORDER BY purge_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM services AS s
    USING doomed
    WHERE s.service_id = doomed.service_id
    RETURNING s.service_id, s.account_id, s.service_arn, s.service_name
    """
)

DELETE_OPERATIONS_OF_SERVICES = text(
    """
    DELETE FROM operations
    WHERE service_id = ANY(CAST(:service_ids AS text[]))
    RETURNING operation_id
    """
)

# Only failed jobs: a queued or running job holds a lease a worker fences on, and a
# deleted service has none of those.
DELETE_FAILED_JOBS_OF_SERVICES = text(
    """
    DELETE FROM jobs
    WHERE service_id = ANY(CAST(:service_ids AS text[])) AND state = 'failed'
    RETURNING job_id
    """
)

# Ended operations older than the retention (served by ix_operations_ended_at).
PURGE_ENDED_OPERATIONS = text(
    """
    WITH doomed AS MATERIALIZED (
        SELECT operation_id
        FROM operations
        WHERE ended_at < now() - make_interval(secs => :older_than_seconds)
        ORDER BY ended_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM operations AS o
    USING doomed
    WHERE o.operation_id = doomed.operation_id
    RETURNING o.operation_id
    """
)

# Idempotency keys older than the retention (served by ix_request_ids_created_at).
PURGE_REQUEST_IDS = text(
    """
    WITH doomed AS MATERIALIZED (
        SELECT account_id, request_id
        FROM request_ids
        WHERE created_at < now() - make_interval(secs => :older_than_seconds)
        ORDER BY created_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM request_ids AS r
    USING doomed
    WHERE r.account_id = doomed.account_id AND r.request_id = doomed.request_id
    RETURNING r.request_id
    """
)

# Failed jobs whose service is gone: kept until now so that a later delete could resume
# from their progress, which can no longer happen. The service is looked up per failed
# job (a correlated subquery, not NOT EXISTS, which the planner may turn into a scan of
# every service): failed jobs are few and walked in ix_jobs_failed order.
PURGE_ORPHANED_FAILED_JOBS = text(
    """
    WITH doomed AS MATERIALIZED (
        SELECT j.job_id
        FROM jobs AS j
        WHERE j.state = 'failed'
          AND j.service_id IS NOT NULL
          AND (SELECT 1 FROM services AS s WHERE s.service_id = j.service_id) IS NULL
        ORDER BY j.job_id
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM jobs AS j
    USING doomed
    WHERE j.job_id = doomed.job_id
    RETURNING j.job_id
    """
)
