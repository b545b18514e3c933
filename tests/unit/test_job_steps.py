"""What a service job's attempt costs in transactions: the step that starts every attempt
is marked in the transaction that loads the service, step markers (progress that every
attempt writes again) do not wait for the disk, a delete shows its image step with its
first progress save, and the outcome waits for the disk."""

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
    assert len(committed) == 1
    assert committed[0].step_marks == [("stop_compute", False)]
    # The other steps go through the job's context: the image step in the statement of
    # the first progress save (durable, as a save must be), then a lazy marker.
    assert run.context is not None
    assert run.context.step_marks == [
        ("delete_image_copy", True),
        ("delete_configuration", False),
    ]
    assert run.context.progress["image_objects"] > 0
    # Then the outcome's, which marks no step: its commit is a durable one.
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
