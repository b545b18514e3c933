"""What a service job's attempt costs in transactions: the service is read without one,
step markers (progress that every attempt writes again) are statements of the job's
context that do not wait for the disk, a delete shows its image step with its first
progress save, and only the outcome's transaction is committed, durably."""

from __future__ import annotations

from servicecontrol_server.domain.model import OperationStatus, ServiceStatus
from tests.unit.harness import ACCOUNT, Unit


async def test_a_delete_marks_its_steps_through_its_context_and_commits_only_its_outcome() -> None:
    unit = Unit()
    service = await unit.running_service()
    result = await unit.services.delete_service(ACCOUNT, service.service_arn)
    before = len(unit.uow.made)
    [run] = await unit.run_jobs()

    # No transaction of the factory's is committed: the load only reads.
    assert [uow for uow in unit.uow.made[before:] if uow.committed] == []
    # The steps go through the job's context: the image step in the statement of the
    # first progress save (durable, as a save must be), the others as lazy markers.
    assert run.context is not None
    assert run.context.step_marks == [
        ("stop_compute", False),
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


async def test_pause_and_resume_mark_their_only_step_and_commit_only_their_outcome() -> None:
    unit = Unit()
    service = await unit.running_service()
    await unit.services.pause_service(ACCOUNT, service.service_arn)
    before = len(unit.uow.made)
    [run] = await unit.run_jobs()
    assert [uow for uow in unit.uow.made[before:] if uow.committed] == []
    assert run.context is not None and run.context.step_marks == [("stop_compute", False)]

    await unit.services.resume_service(ACCOUNT, service.service_arn)
    before = len(unit.uow.made)
    [run] = await unit.run_jobs()
    assert [uow for uow in unit.uow.made[before:] if uow.committed] == []
    assert run.context is not None and run.context.step_marks == [("start_compute", False)]
