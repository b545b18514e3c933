"""The domain's state rules, directly (domain/model.py): which operation may start from
which status, where each lands on success and on failure. Every (status, operation)
pair is listed here by hand, so a change to ALLOWED_FROM, SUCCESS_STATUS or
failure_status shows up as a test to update, not as a silent behaviour change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from servicecontrol_server.domain.errors import InvalidState, OperationInProgress
from servicecontrol_server.domain.model import (
    ALLOWED_FROM,
    SUCCESS_STATUS,
    OperationType,
    Service,
    ServiceStatus,
    failure_status,
)

S = ServiceStatus
O = OperationType  # noqa: E741

# (status, operation) -> may it start? For every status and every operation a service
# can be asked for (CREATE_SERVICE has no service to start from).
MAY_START: dict[tuple[ServiceStatus, OperationType], bool] = {
    (S.RUNNING, O.PAUSE_SERVICE): True,
    (S.RUNNING, O.RESUME_SERVICE): False,
    (S.RUNNING, O.UPDATE_SERVICE): True,
    (S.RUNNING, O.DELETE_SERVICE): True,
    (S.PAUSED, O.PAUSE_SERVICE): False,
    (S.PAUSED, O.RESUME_SERVICE): True,
    (S.PAUSED, O.UPDATE_SERVICE): False,
    (S.PAUSED, O.DELETE_SERVICE): True,
    (S.CREATE_FAILED, O.PAUSE_SERVICE): False,
    (S.CREATE_FAILED, O.RESUME_SERVICE): False,
    (S.CREATE_FAILED, O.UPDATE_SERVICE): True,
    (S.CREATE_FAILED, O.DELETE_SERVICE): True,
    (S.DELETE_FAILED, O.PAUSE_SERVICE): False,
    (S.DELETE_FAILED, O.RESUME_SERVICE): False,
    (S.DELETE_FAILED, O.UPDATE_SERVICE): False,
    (S.DELETE_FAILED, O.DELETE_SERVICE): True,
    (S.DELETED, O.PAUSE_SERVICE): False,
    (S.DELETED, O.RESUME_SERVICE): False,
    (S.DELETED, O.UPDATE_SERVICE): False,
    (S.DELETED, O.DELETE_SERVICE): False,
    # OPERATION_IN_PROGRESS without an operation id (never written by the use cases):
    # refused as an invalid state rather than as an operation in progress.
    (S.OPERATION_IN_PROGRESS, O.PAUSE_SERVICE): False,
    (S.OPERATION_IN_PROGRESS, O.RESUME_SERVICE): False,
    (S.OPERATION_IN_PROGRESS, O.UPDATE_SERVICE): False,
    (S.OPERATION_IN_PROGRESS, O.DELETE_SERVICE): False,
    (S.RUNNING, O.START_DEPLOYMENT): True,
    (S.PAUSED, O.START_DEPLOYMENT): False,
    (S.CREATE_FAILED, O.START_DEPLOYMENT): False,
    (S.DELETE_FAILED, O.START_DEPLOYMENT): False,
    (S.DELETED, O.START_DEPLOYMENT): False,
    (S.OPERATION_IN_PROGRESS, O.START_DEPLOYMENT): False,
}
MUTATIONS = [
    O.PAUSE_SERVICE,
    O.RESUME_SERVICE,
    O.UPDATE_SERVICE,
    O.DELETE_SERVICE,
    O.START_DEPLOYMENT,
]

# Where the service lands when the operation succeeds.
SUCCEEDS_TO = {
    O.CREATE_SERVICE: S.RUNNING,
    O.PAUSE_SERVICE: S.PAUSED,
    O.RESUME_SERVICE: S.RUNNING,
    O.UPDATE_SERVICE: S.RUNNING,
    O.DELETE_SERVICE: S.DELETED,
    O.START_DEPLOYMENT: S.RUNNING,
}

# (operation, status it started from) -> where it lands when it gives up.
FAILS_TO: dict[tuple[OperationType, ServiceStatus], ServiceStatus] = {
    # A create has no earlier status; whatever the service row says, it lands CREATE_FAILED.
    (O.CREATE_SERVICE, S.RUNNING): S.CREATE_FAILED,
    (O.PAUSE_SERVICE, S.RUNNING): S.RUNNING,
    (O.RESUME_SERVICE, S.PAUSED): S.PAUSED,
    (O.UPDATE_SERVICE, S.RUNNING): S.RUNNING,
    (O.UPDATE_SERVICE, S.CREATE_FAILED): S.CREATE_FAILED,
    (O.DELETE_SERVICE, S.RUNNING): S.DELETE_FAILED,
    (O.DELETE_SERVICE, S.PAUSED): S.DELETE_FAILED,
    (O.DELETE_SERVICE, S.CREATE_FAILED): S.DELETE_FAILED,
    (O.DELETE_SERVICE, S.DELETE_FAILED): S.DELETE_FAILED,
    (O.START_DEPLOYMENT, S.RUNNING): S.RUNNING,
}

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def service(status: ServiceStatus, operation_id: str | None = None) -> Service:
    return Service(
        service_id="0123456789abcdef0123456789abcdef",
        account_id="111122223333",
        region="us-east-1",
        service_name="web-app",
        service_arn="arn:aws:apprunner:us-east-1:111122223333:service/web-app/0123",
        service_url="abc.example",
        status=status,
        version=4,
        created_at=NOW,
        updated_at=NOW,
        status_message="earlier failure",
        current_operation_id=operation_id,
    )


def test_the_table_covers_every_status_and_mutation() -> None:
    assert set(MAY_START) == {(s, o) for s in ServiceStatus for o in MUTATIONS}
    assert set(ALLOWED_FROM) == set(MUTATIONS)


@pytest.mark.parametrize(("status", "op"), list(MAY_START), ids=lambda v: str(v))
def test_check_can_start(status: ServiceStatus, op: OperationType) -> None:
    svc = service(status)
    if MAY_START[status, op]:
        svc.check_can_start(op)
        assert status in ALLOWED_FROM[op]
        return
    with pytest.raises(InvalidState) as refused:
        svc.check_can_start(op)
    assert refused.value.reason == "INVALID_STATE"
    assert refused.value.metadata["status"] == status.value
    assert refused.value.metadata["allowedStatuses"] == ",".join(sorted(ALLOWED_FROM[op]))
    assert status.value in refused.value.message and op.value in refused.value.message


@pytest.mark.parametrize("op", MUTATIONS)
def test_an_operation_in_progress_refuses_every_other(op: OperationType) -> None:
    svc = service(S.OPERATION_IN_PROGRESS, "9f1c1c56-8f6e-4d5e-9f3e-2b7f4c1a0d11")
    with pytest.raises(OperationInProgress) as refused:
        svc.check_can_start(op)
    assert refused.value.metadata == {
        "serviceArn": svc.service_arn,
        "operationId": "9f1c1c56-8f6e-4d5e-9f3e-2b7f4c1a0d11",
    }


@pytest.mark.parametrize(("status", "op"), [k for k, ok in MAY_START.items() if ok], ids=str)
def test_start_operation_remembers_where_it_started(
    status: ServiceStatus, op: OperationType
) -> None:
    svc = service(status)
    svc.start_operation(op, "op-1")
    assert svc.status is S.OPERATION_IN_PROGRESS
    assert svc.status_before_operation is status
    assert svc.current_operation_id == "op-1"
    assert svc.status_message == ""
    # Nothing else about the service changes until it is saved.
    assert svc.version == 4


@pytest.mark.parametrize(("status", "op"), [k for k, ok in MAY_START.items() if not ok], ids=str)
def test_start_operation_refused_changes_nothing(status: ServiceStatus, op: OperationType) -> None:
    svc = service(status)
    with pytest.raises(InvalidState):
        svc.start_operation(op, "op-1")
    assert svc.status is status
    assert svc.current_operation_id is None
    assert svc.status_before_operation is None
    assert svc.status_message == "earlier failure"


@pytest.mark.parametrize("op", list(OperationType))
def test_success_status(op: OperationType) -> None:
    assert SUCCESS_STATUS[op] is SUCCEEDS_TO[op]


def test_failure_landings_cover_every_allowed_start() -> None:
    starts = {(op, s) for op, allowed in ALLOWED_FROM.items() for s in allowed}
    assert starts | {(O.CREATE_SERVICE, S.RUNNING)} == set(FAILS_TO)


@pytest.mark.parametrize(("op", "before"), list(FAILS_TO), ids=str)
def test_failure_status(op: OperationType, before: ServiceStatus) -> None:
    assert failure_status(op, before) is FAILS_TO[op, before]


@pytest.mark.parametrize("before", list(ServiceStatus))
def test_a_create_always_fails_to_create_failed(before: ServiceStatus) -> None:
    assert failure_status(O.CREATE_SERVICE, before) is S.CREATE_FAILED


@pytest.mark.parametrize("before", list(ServiceStatus))
def test_a_delete_always_fails_to_delete_failed(before: ServiceStatus) -> None:
    assert failure_status(O.DELETE_SERVICE, before) is S.DELETE_FAILED


def test_etag_follows_the_version() -> None:
    svc = service(S.RUNNING)
    before = svc.etag
    svc.version += 1
    assert svc.etag != before
    assert svc.etag == '"01234567-5"'
