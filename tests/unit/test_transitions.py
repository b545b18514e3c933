"""Every state transition of a service, driven end to end through the use cases and the
job handlers on the fakes (the domain's table on its own is in test_state_rules.py).

Transitions and the test that covers each:

    (none)                -> OPERATION_IN_PROGRESS  create accepted:   test_create[*]
    OPERATION_IN_PROGRESS -> RUNNING                create succeeded:  test_create[succeeds]
    OPERATION_IN_PROGRESS -> CREATE_FAILED          create gave up:    test_create[fails]
    RUNNING               -> OPERATION_IN_PROGRESS  pause, update, delete accepted:
                                                    test_operation[*-from-RUNNING-*]
    PAUSED                -> OPERATION_IN_PROGRESS  resume, delete accepted:
                                                    test_operation[*-from-PAUSED-*]
    CREATE_FAILED         -> OPERATION_IN_PROGRESS  update, delete accepted:
                                                    test_operation[*-from-CREATE_FAILED-*]
    DELETE_FAILED         -> OPERATION_IN_PROGRESS  delete accepted again:
                                                    test_operation[DELETE-from-DELETE_FAILED-*]
    OPERATION_IN_PROGRESS -> PAUSED     pause succeeded       test_operation[PAUSE-*-succeeds]
                                        resume gave up        test_operation[RESUME-*-fails]
    OPERATION_IN_PROGRESS -> RUNNING    resume succeeded      test_operation[RESUME-*-succeeds]
                                        update succeeded      test_operation[UPDATE-*-succeeds]
                                        pause gave up         test_operation[PAUSE-*-fails]
                                        update from RUNNING gave up (rolled back)
                                                 test_operation[UPDATE-from-RUNNING-fails]
    OPERATION_IN_PROGRESS -> CREATE_FAILED      update of a CREATE_FAILED service gave up
                                                 test_operation[UPDATE-from-CREATE_FAILED-fails]
    OPERATION_IN_PROGRESS -> DELETED            delete succeeded
                                                 test_operation[DELETE-*-succeeds]
    OPERATION_IN_PROGRESS -> DELETE_FAILED      delete gave up
                                                 test_operation[DELETE-*-fails]
    DELETED               -> (purged)           the tombstone's retention ended:
                                 test_reaper.py::test_reaper_purges_only_what_is_due
    any status not allowed -> (unchanged)       test_refused_operation[*]

A failure here is what the worker does after the last attempt: the compute driver is
down for every attempt, so each operation retries and then gives up."""

from __future__ import annotations

import pytest

from servicecontrol_server.domain.errors import InvalidState
from servicecontrol_server.domain.model import (
    ALLOWED_FROM,
    OperationStatus,
    OperationType,
    ServiceStatus,
)

from .harness import ACCOUNT, IMAGE, IMAGE_V2, MAX_ATTEMPTS, Unit, image_source

S = ServiceStatus
O = OperationType  # noqa: E741

# (operation, from, outcome) -> (service lands, operation ends, event type)
LANDINGS: dict[tuple[OperationType, ServiceStatus, str], tuple[ServiceStatus, OperationStatus]] = {
    (O.PAUSE_SERVICE, S.RUNNING, "succeeds"): (S.PAUSED, OperationStatus.SUCCEEDED),
    (O.PAUSE_SERVICE, S.RUNNING, "fails"): (S.RUNNING, OperationStatus.FAILED),
    (O.RESUME_SERVICE, S.PAUSED, "succeeds"): (S.RUNNING, OperationStatus.SUCCEEDED),
    (O.RESUME_SERVICE, S.PAUSED, "fails"): (S.PAUSED, OperationStatus.FAILED),
    (O.UPDATE_SERVICE, S.RUNNING, "succeeds"): (S.RUNNING, OperationStatus.SUCCEEDED),
    (O.UPDATE_SERVICE, S.RUNNING, "fails"): (S.RUNNING, OperationStatus.ROLLBACK_SUCCEEDED),
    (O.UPDATE_SERVICE, S.CREATE_FAILED, "succeeds"): (S.RUNNING, OperationStatus.SUCCEEDED),
    (O.UPDATE_SERVICE, S.CREATE_FAILED, "fails"): (S.CREATE_FAILED, OperationStatus.FAILED),
    (O.DELETE_SERVICE, S.RUNNING, "succeeds"): (S.DELETED, OperationStatus.SUCCEEDED),
    (O.DELETE_SERVICE, S.RUNNING, "fails"): (S.DELETE_FAILED, OperationStatus.FAILED),
    (O.DELETE_SERVICE, S.PAUSED, "succeeds"): (S.DELETED, OperationStatus.SUCCEEDED),
    (O.DELETE_SERVICE, S.PAUSED, "fails"): (S.DELETE_FAILED, OperationStatus.FAILED),
    (O.DELETE_SERVICE, S.CREATE_FAILED, "succeeds"): (S.DELETED, OperationStatus.SUCCEEDED),
    (O.DELETE_SERVICE, S.CREATE_FAILED, "fails"): (S.DELETE_FAILED, OperationStatus.FAILED),
    (O.DELETE_SERVICE, S.DELETE_FAILED, "succeeds"): (S.DELETED, OperationStatus.SUCCEEDED),
    (O.DELETE_SERVICE, S.DELETE_FAILED, "fails"): (S.DELETE_FAILED, OperationStatus.FAILED),
    (O.START_DEPLOYMENT, S.RUNNING, "succeeds"): (S.RUNNING, OperationStatus.SUCCEEDED),
    (O.START_DEPLOYMENT, S.RUNNING, "fails"): (S.RUNNING, OperationStatus.FAILED),
}
VERB = {
    O.CREATE_SERVICE: "create",
    O.PAUSE_SERVICE: "pause",
    O.RESUME_SERVICE: "resume",
    O.UPDATE_SERVICE: "update",
    O.DELETE_SERVICE: "delete",
    O.START_DEPLOYMENT: "deployment",
}
# The use case of each operation, where it is not `<verb>_service`.
METHOD = {O.START_DEPLOYMENT: "start_deployment"}
SUCCEEDED_EVENT = {
    O.CREATE_SERVICE: "service.created",
    O.PAUSE_SERVICE: "service.paused",
    O.RESUME_SERVICE: "service.resumed",
    O.UPDATE_SERVICE: "service.updated",
    O.DELETE_SERVICE: "service.deleted",
    O.START_DEPLOYMENT: "service.deployed",
}


def test_the_table_covers_every_allowed_start_and_both_outcomes() -> None:
    assert set(LANDINGS) == {
        (op, status, outcome)
        for op, allowed in ALLOWED_FROM.items()
        for status in allowed
        for outcome in ("succeeds", "fails")
    }


async def finish_jobs(unit: Unit, outcome: str) -> None:
    """Runs the queued job to its end: every attempt fails when `outcome` is "fails"."""
    unit.compute.down = outcome == "fails"
    runs = await unit.run_jobs()
    unit.compute.down = False
    if outcome == "fails":
        assert [r.outcome for r in runs] == ["retry"] * (MAX_ATTEMPTS - 1) + ["failed"]
        assert runs[-1].failure is not None
        assert runs[-1].failure.reason == "COMPUTE_UNAVAILABLE"
    else:
        assert [r.outcome for r in runs] == ["completed"]


@pytest.mark.parametrize("outcome", ["succeeds", "fails"])
async def test_create(outcome: str) -> None:
    unit = Unit()
    unit.push_image()
    result = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    accepted = unit.db.service(result.service.service_id)
    assert accepted.status is S.OPERATION_IN_PROGRESS
    assert accepted.status_before_operation is None

    await finish_jobs(unit, outcome)

    landed = unit.db.service(accepted.service_id)
    op = unit.db.operation(result.operation_id)
    assert landed.current_operation_id is None
    assert landed.status_before_operation is None
    if outcome == "succeeds":
        assert landed.status is S.RUNNING
        assert op.status is OperationStatus.SUCCEEDED
        assert unit.db.events[-1].type == "service.created"
    else:
        assert landed.status is S.CREATE_FAILED
        assert op.status is OperationStatus.FAILED
        assert unit.db.events[-1].type == "service.create_failed"
        assert unit.db.events[-1].payload["status"] == "CREATE_FAILED"


@pytest.mark.parametrize(
    ("op_type", "start", "outcome"),
    list(LANDINGS),
    ids=[f"{op.name.split('_')[0]}-from-{s.value}-{o}" for op, s, o in LANDINGS],
)
async def test_operation(op_type: OperationType, start: ServiceStatus, outcome: str) -> None:
    unit = Unit()
    unit.push_image(IMAGE)
    svc = await unit.service_in(start)
    unit.push_image(IMAGE_V2)
    verb = VERB[op_type]
    if op_type is O.UPDATE_SERVICE:
        result = await unit.services.update_service(
            ACCOUNT, svc.service_arn, image_source(IMAGE_V2), etag=svc.etag
        )
    else:
        call = getattr(unit.services, METHOD.get(op_type, f"{verb}_service"))
        result = await call(ACCOUNT, svc.service_arn, etag=svc.etag)
    accepted = unit.db.service(svc.service_id)
    assert accepted.status is S.OPERATION_IN_PROGRESS
    assert accepted.status_before_operation is start
    assert unit.db.events[-1].type == f"service.{verb}_requested"

    await finish_jobs(unit, outcome)

    landing, op_status = LANDINGS[op_type, start, outcome]
    landed = unit.db.service(svc.service_id)
    op = unit.db.operation(result.operation_id)
    assert landed.status is landing
    assert op.status is op_status
    assert landed.current_operation_id is None
    assert landed.status_before_operation is None
    assert op.ended_at == unit.clock.now()
    event = unit.db.events[-1]
    if outcome == "succeeds":
        assert event.type == SUCCEEDED_EVENT[op_type]
        assert landed.status_message == ""
    else:
        assert event.type == f"service.{verb}_failed"
        assert event.payload["status"] == landing.value
        assert event.payload["reason"] == "COMPUTE_UNAVAILABLE"
        assert op.error is not None
        assert op.error["metadata"]["attempts"] == str(MAX_ATTEMPTS)
        assert landed.status_message == op.error["message"]
    assert event.payload["operationId"] == result.operation_id


REFUSED = [
    (op, status)
    for op in ALLOWED_FROM
    for status in (S.RUNNING, S.PAUSED, S.CREATE_FAILED, S.DELETE_FAILED)
    if status not in ALLOWED_FROM[op]
]


@pytest.mark.parametrize(
    ("op_type", "start"), REFUSED, ids=[f"{op.name}-from-{s.value}" for op, s in REFUSED]
)
async def test_refused_operation(op_type: OperationType, start: ServiceStatus) -> None:
    unit = Unit()
    svc = await unit.service_in(start)
    jobs = dict(unit.db.tables.jobs)
    with pytest.raises(InvalidState):
        if op_type is O.UPDATE_SERVICE:
            await unit.services.update_service(ACCOUNT, svc.service_arn, image_source(IMAGE_V2))
        else:
            method = METHOD.get(op_type, f"{VERB[op_type]}_service")
            await getattr(unit.services, method)(ACCOUNT, svc.service_arn)
    assert unit.db.service(svc.service_id) == svc
    assert unit.db.tables.jobs == jobs


async def test_a_deleted_service_accepts_no_operation() -> None:
    unit = Unit()
    svc = await unit.running_service()
    await unit.services.delete_service(ACCOUNT, svc.service_arn)
    await unit.run_jobs()
    deleted = unit.db.service(svc.service_id)
    for verb in ("pause", "resume", "delete"):
        with pytest.raises(InvalidState):
            await getattr(unit.services, f"{verb}_service")(ACCOUNT, svc.service_arn)
    with pytest.raises(InvalidState):
        await unit.services.update_service(ACCOUNT, svc.service_arn, image_source(IMAGE_V2))
    assert unit.db.service(svc.service_id) == deleted
