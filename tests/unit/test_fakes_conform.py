"""The fakes implement the ports: statically (the assignments below are checked by
`MYPYPATH=server mypy tests/unit`; without the path mypy cannot see through the editable
install and takes every port for Any) and by signature at run time, so a method added to
or changed in a port and not in its fake fails here."""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import Any

import pytest

from servicecontrol_server.application import ports
from servicecontrol_server.application.ports import jobs as job_ports
from servicecontrol_server.application.ports import repositories as repository_ports
from servicecontrol_server.domain.errors import BackendUnavailable
from servicecontrol_server.domain.model import ServiceStatus

from . import fakes
from .harness import ACCOUNT, Unit


def _static_conformance(db: fakes.FakeDatabase, job: ports.ClaimedJob) -> None:
    """Never called: mypy checks that every fake is assignable to its port."""
    uow: ports.UnitOfWork = fakes.FakeUnitOfWork(db)
    factory: ports.UnitOfWorkFactory = fakes.FakeUnitOfWorkFactory(db)
    accounts: ports.AccountRepository = uow.accounts
    services: ports.ServiceRepository = fakes.FakeServiceRepository(fakes.FakeUnitOfWork(db))
    operations: ports.OperationRepository = uow.operations
    request_ids: ports.RequestIdRepository = uow.request_ids
    connections: ports.ConnectionRepository = uow.connections
    certificates: ports.CertificateRepository = uow.certificates
    domains: ports.CustomDomainRepository = uow.custom_domains
    jobs: ports.JobRepository = uow.jobs
    retention: ports.RetentionRepository = uow.retention
    tags: ports.TagRepository = uow.tags
    context: ports.JobContext = fakes.FakeJobContext(db, job)
    store: ports.ObjectStore = fakes.FakeObjectStore()
    compute: ports.ComputeDriver = fakes.FakeCompute(db)
    dns: ports.DnsValidator = fakes.FakeDnsValidator()
    feed: ports.EventFeed = fakes.FakeEventFeed(db)
    waiter: ports.OperationWaiter = fakes.FakeOperationWaiter(db)
    del uow, factory, accounts, services, operations, request_ids, connections
    del certificates, domains, jobs, retention, tags, context, store, compute, dns, feed, waiter


PAIRS: list[tuple[Any, type]] = [
    (repository_ports.AccountRepository, fakes.FakeAccountRepository),
    (repository_ports.ServiceRepository, fakes.FakeServiceRepository),
    (repository_ports.OperationRepository, fakes.FakeOperationRepository),
    (repository_ports.RequestIdRepository, fakes.FakeRequestIdRepository),
    (repository_ports.ConnectionRepository, fakes.FakeConnectionRepository),
    (repository_ports.CertificateRepository, fakes.FakeCertificateRepository),
    (repository_ports.CustomDomainRepository, fakes.FakeCustomDomainRepository),
    (repository_ports.JobRepository, fakes.FakeJobRepository),
    (repository_ports.RetentionRepository, fakes.FakeRetentionRepository),
    (repository_ports.TagRepository, fakes.FakeTagRepository),
    (ports.UnitOfWork, fakes.FakeUnitOfWork),
    (job_ports.JobContext, fakes.FakeJobContext),
    (ports.ObjectStore, fakes.FakeObjectStore),
    (ports.ComputeDriver, fakes.FakeCompute),
    (ports.DnsValidator, fakes.FakeDnsValidator),
    (ports.EventFeed, fakes.FakeEventFeed),
    (ports.OperationWaiter, fakes.FakeOperationWaiter),
]


def _members(cls: type) -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_") or name in ("__aenter__", "__aexit__")
        if callable(value) or isinstance(value, property)
    }


@pytest.mark.parametrize(("port", "fake"), PAIRS, ids=[p.__name__ for p, _ in PAIRS])
def test_fake_has_every_method_of_its_port_with_the_same_parameters(port: Any, fake: type) -> None:
    for name, member in _members(port).items():
        assert hasattr(fake, name), f"{fake.__name__} lacks {name}"
        if isinstance(member, property):
            assert isinstance(inspect.getattr_static(fake, name), property), name
            continue
        ours = inspect.getattr_static(fake, name)
        wanted = list(inspect.signature(member).parameters.values())
        have = list(inspect.signature(ours).parameters.values())
        assert [(p.name, p.kind) for p in have] == [(p.name, p.kind) for p in wanted], (
            f"{fake.__name__}.{name}{inspect.signature(ours)} differs from "
            f"{port.__name__}.{name}{inspect.signature(member)}"
        )
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(member) or (
            inspect.isasyncgenfunction(ours) and name == "follow"
        ), f"{fake.__name__}.{name}: async-ness differs from the port"


async def test_a_unit_of_work_sees_committed_state_only() -> None:
    unit = Unit()
    async with unit.uow() as writer:
        await writer.accounts.lock(ACCOUNT)
        async with unit.uow() as reader:
            assert ACCOUNT not in reader.tables.accounts
        await writer.commit()
    assert writer.committed
    async with unit.uow() as reader:
        assert ACCOUNT in reader.tables.accounts


async def test_leaving_without_commit_rolls_back_writes_and_events() -> None:
    unit = Unit()
    service = await unit.running_service()
    events_before = list(unit.db.events)
    async with unit.uow() as uow:
        loaded = await uow.services.get(ACCOUNT, service.service_id, for_update=True)
        assert loaded is not None
        loaded.status = ServiceStatus.PAUSED
        await uow.services.save(loaded)
        uow.record(unit.db.events[0])
    assert not uow.committed
    assert unit.db.service(service.service_id).status is ServiceStatus.RUNNING
    assert unit.db.events == events_before


async def test_commits_merge_rows_changed_by_different_units_of_work() -> None:
    unit = Unit()
    async with unit.uow() as first, unit.uow() as second:
        await first.accounts.lock(ACCOUNT)
        await second.accounts.lock("999999999999")
        await first.commit()
        await second.commit()
    assert set(unit.db.tables.accounts) == {ACCOUNT, "999999999999"}


async def test_database_down_is_backend_unavailable() -> None:
    unit = Unit()
    unit.db.down = True
    with pytest.raises(BackendUnavailable):
        async with unit.uow():
            pass


async def test_now_is_the_transactions_start_and_moves_with_the_clock() -> None:
    unit = Unit()
    async with unit.uow() as uow:
        started = await uow.now()
        unit.clock.advance(30)
        assert await uow.now() == started
        await uow.commit()
        # A commit ends the transaction; the next one starts now.
        assert await uow.now() == started + timedelta(seconds=30)


async def test_committed_events_and_notifications() -> None:
    unit = Unit()
    await unit.running_service()
    [create_uow, *_] = unit.uow.committed
    [requested] = create_uow.events
    assert requested.type == "service.create_requested"
    assert unit.db.jobs_notified == ["create_service"]
    # Only the commit that ended the operation notified its waiters.
    assert unit.db.operations_notified == [requested.payload["operationId"]]
    assert unit.db.events[-1].type == "service.created"
