"""What a service job's attempt costs in transactions: the step that starts every attempt
is marked in the transaction that loads the service, and step markers (progress that
every attempt writes again) do not wait for the disk; the outcome does."""

from __future__ import annotations

from servicecontrol_server.domain.model import OperationStatus, ServiceStatus
from tests.unit.harness import ACCOUNT, Unit


async def test_a_delete_marks_its_first_step_while_loading_and_its_markers_lazily() -> None:
    unit = Unit()
    service = await unit.running_service()
    result = await unit.services.delete_service(ACCOUNT, service.service_arn)
    before = len(unit.uow.made)
    [run] = await unit.run_jobs()
    committed = [uow for uow in unit.uow.made[before:] if uow.committed]

    # The load and the first step: one transaction, which both read and marked.
    first = committed[0]
    assert first.step_marks == [("stop_compute", False)]
    # Every step, in order, each marked once and none of them durably.
    marks = [mark for uow in committed for mark in uow.step_marks]
    assert marks == [
        ("stop_compute", False),
        ("delete_image_copy", False),
        ("delete_configuration", False),
    ]
    # The load with the first marker and two more markers: three transactions, no more.
    assert len(committed) == 3
    # Then the outcome's, which marks no step: its commit is a durable one.
    assert run.context is not None
    [outcome] = run.context.transactions
    assert outcome.committed and outcome.step_marks == []
    op = unit.db.operation(result.operation_id)
    assert op.status is OperationStatus.SUCCEEDED
    assert op.current_step == "done"
    assert unit.db.service(service.service_id).status is ServiceStatus.DELETED


async def test_pause_and_resume_mark_their_only_step_while_loading() -> None:
    unit = Unit()
    service = await unit.running_service()
    await unit.services.pause_service(ACCOUNT, service.service_arn)
    before = len(unit.uow.made)
    await unit.run_jobs()
    committed = [uow for uow in unit.uow.made[before:] if uow.committed]
    assert [uow.step_marks for uow in committed] == [[("stop_compute", False)]]

    await unit.services.resume_service(ACCOUNT, service.service_arn)
    before = len(unit.uow.made)
    await unit.run_jobs()
    committed = [uow for uow in unit.uow.made[before:] if uow.committed]
    assert [uow.step_marks for uow in committed] == [[("start_compute", False)]]
