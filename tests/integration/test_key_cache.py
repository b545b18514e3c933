"""The API key cache against a real PostgreSQL: every change to api_keys is notified;
kept keys spare the lookup; a key revoked from another session is refused within the
bound (in practice almost at once), one revoked through this process on the next call;
with the listener's session killed, or unable to come back, the cache is not used once
the bound has passed; and with the cache off every call looks its key up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.adapters.postgres.database import libpq_url
from servicecontrol_server.adapters.postgres.identity import PostgresIdentityStore
from servicecontrol_server.adapters.postgres.key_cache import KeyCache
from servicecontrol_server.adapters.postgres.key_changes import CHANNEL, KeyChangeListener
from servicecontrol_server.application.identity import StoredKey
from tests.support.server import (
    ACCOUNT,
    Harness,
    bearer,
    harness_settings,
    refused_within_bound,
    running_harness,
)
from tests.support.waiting import wait_until


def url_of(harness: Harness) -> str:
    return libpq_url(harness.settings.database_url)


def cache_of(harness: Harness) -> tuple[KeyChangeListener, KeyCache, PostgresIdentityStore]:
    listener = harness.app.key_changes
    store = harness.app.identity.store
    assert listener is not None and isinstance(store, PostgresIdentityStore)
    assert store.cache is listener.cache
    return listener, listener.cache, store


def count_lookups(store: Any) -> Callable[[], int]:
    """Counts the lookups that reach the database through `store` from now on."""
    calls = 0
    lookup = store.read_key

    async def counted(key_id: str) -> StoredKey | None:
        nonlocal calls
        calls += 1
        return await lookup(key_id)

    store.read_key = counted
    return lambda: calls


async def list_services(harness: Harness, token: str) -> None:
    await harness.stub.ListServices(api.ListServicesRequest(), metadata=bearer(token))


async def kept(harness: Harness, token: str) -> None:
    """Calls with `token` until a call is answered without a lookup: its key is kept (a
    lookup begun before a change to api_keys was applied, such as the key's own
    creation, is not kept)."""
    _, cache, store = cache_of(harness)
    await wait_until(cache.live, timeout=10)
    lookups = count_lookups(store)

    async def answered_from_the_cache() -> bool:
        before = lookups()
        await list_services(harness, token)
        return lookups() == before

    try:
        await wait_until(answered_from_the_cache, timeout=10)
    finally:
        del store.read_key


async def revoke_elsewhere(harness: Harness, key_id: str) -> None:
    """Revokes the key from another session, as another replica or an operator would."""
    async with await psycopg.AsyncConnection.connect(url_of(harness), autocommit=True) as conn:
        await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (key_id,))


async def test_every_change_to_a_key_is_notified(harness: Harness) -> None:
    async with await psycopg.AsyncConnection.connect(url_of(harness), autocommit=True) as conn:
        await conn.execute(f"LISTEN {CHANNEL}")
        key = await harness.new_key()
        kid = key.key.key_id
        await harness.app.identity.revoke_key(ACCOUNT, kid)
        async with await psycopg.AsyncConnection.connect(url_of(harness)) as other:
            await other.execute("DELETE FROM api_keys WHERE key_id = %s", (kid,))
            # Nothing is announced before its transaction commits.
            await other.execute("TRUNCATE api_keys CASCADE")
            await other.commit()
        payloads: list[str] = []
        async for notify in conn.notifies(timeout=10, stop_after=4):
            payloads.append(notify.payload)
    assert payloads == [kid, kid, kid, "*"]


async def test_kept_keys_spare_the_lookup(harness: Harness) -> None:
    listener, _, store = cache_of(harness)
    token = harness.keys[ACCOUNT].token
    await kept(harness, token)
    lookups = count_lookups(store)
    for _ in range(5):
        await list_services(harness, token)
    assert lookups() == 0
    # A wrong secret is refused from the kept row, without a lookup.
    with pytest.raises(Exception, match="UNAUTHENTICATED"):
        await list_services(harness, token.rpartition(".")[0] + "." + "x" * 40)
    assert lookups() == 0
    assert listener.heartbeat_seconds == pytest.approx(0.25)


async def test_a_revoke_from_another_session_is_refused_within_the_bound(
    harness: Harness,
) -> None:
    key = await harness.new_key()
    await kept(harness, key.token)
    await revoke_elsewhere(harness, key.key.key_id)
    since = asyncio.get_running_loop().time()
    took = await refused_within_bound(harness, key.token, since)
    # In practice the notification is read at once, long before the bound.
    assert took < harness.settings.api_key_cache_seconds


async def test_a_revoke_through_this_process_is_refused_on_the_next_call(
    harness: Harness,
) -> None:
    key = await harness.new_key()
    await kept(harness, key.token)
    await harness.app.identity.revoke_key(ACCOUNT, key.key.key_id)
    with pytest.raises(Exception, match="revoked"):
        await list_services(harness, key.token)


async def test_a_killed_listener_session_leaves_no_revoke_unseen(harness: Harness) -> None:
    listener, cache, _ = cache_of(harness)
    key = await harness.new_key()
    await kept(harness, key.token)
    killed = listener.backend_pid
    async with await psycopg.AsyncConnection.connect(url_of(harness), autocommit=True) as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", (killed,))
        # Revoked while the listener has no session: its notification reaches no one.
        await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (key.key.key_id,)
        )
    since = asyncio.get_running_loop().time()
    await refused_within_bound(harness, key.token, since)
    # The listener comes back on a new session, and the cache is used again.
    await wait_until(lambda: listener.backend_pid not in (None, killed) and cache.live(), 15)
    with pytest.raises(Exception, match="revoked"):
        await list_services(harness, key.token)


async def test_the_cache_is_not_used_while_the_listener_cannot_prove_itself(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    listener, cache, store = cache_of(harness)
    token = harness.keys[ACCOUNT].token
    away = await harness.new_key()
    await kept(harness, token)
    await kept(harness, away.token)
    url = listener._url
    # It cannot reconnect: nothing listens on port 1.
    listener._url = "postgresql://servicecontrol@127.0.0.1:1/nothing?connect_timeout=2"
    caplog.set_level(logging.WARNING, logger="servicecontrol_server.adapters.postgres")
    async with await psycopg.AsyncConnection.connect(url_of(harness), autocommit=True) as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
    await wait_until(lambda: not cache.live(), timeout=harness.settings.api_key_cache_seconds + 1)
    # Revoked while no session listens: no notification will ever say so.
    await wait_until(lambda: listener.backend_pid is None, timeout=5)
    await revoke_elsewhere(harness, away.key.key_id)
    lookups = count_lookups(store)
    for n in range(3):
        await list_services(harness, token)
        assert lookups() == n + 1
    # However many reconnections fail, the loss is logged once.
    await wait_until(lambda: listener.failures >= 3, timeout=15)
    lost = [r for r in caplog.records if "listener lost" in r.getMessage()]
    assert len(lost) == 1, [r.getMessage() for r in caplog.records]
    listener._url = url
    await wait_until(cache.live, timeout=15)
    # Back, it kept nothing from before: the key revoked while it was away is refused.
    with pytest.raises(Exception, match="revoked"):
        await list_services(harness, away.token)
    await list_services(harness, token)
    before = lookups()
    await list_services(harness, token)
    assert lookups() == before


@pytest.fixture
async def uncached(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    settings = harness_settings(database_url, s3_server, tmp_path, api_key_cache_seconds=0)
    async with running_harness(settings, tmp_path, workers=0) as h:
        yield h


async def test_with_the_cache_off_every_call_looks_its_key_up(uncached: Harness) -> None:
    assert uncached.app.key_changes is None
    store = uncached.app.identity.store
    assert isinstance(store, PostgresIdentityStore) and store.cache is None
    lookups = count_lookups(store)
    for n in range(4):
        await list_services(uncached, uncached.keys[ACCOUNT].token)
        assert lookups() == n + 1


async def test_close_stops_the_listener_at_its_next_heartbeat_without_cancelling_it(
    database_url: str,
) -> None:
    """A task cancelled while the driver waits for an answer could be left waiting for
    good (a shutdown that never ended was seen so): close asks, and the listener ends
    its loop and closes its own session."""
    for _ in range(5):
        cache = KeyCache(1.0)
        listener = KeyChangeListener(database_url, cache)
        listener.start()
        await wait_until(cache.live, timeout=10)
        task = listener._task
        assert task is not None
        await asyncio.wait_for(listener.close(), timeout=listener.heartbeat_seconds + 2)
        assert task.done() and not task.cancelled()
        assert not cache.live()
