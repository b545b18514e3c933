"""The API key cache on a fake clock: an entry is used only while the listener's last
heartbeat (its send time) is within the bound, expiry is judged on every call, the
secret is checked on every call, the cache is bounded, and what was dropped or cleared
while a lookup ran is not kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from servicecontrol_server.adapters.postgres.key_cache import KeyCache
from servicecontrol_server.application.identity import (
    Identity,
    IdentityStore,
    StoredKey,
    secret_hash,
)
from servicecontrol_server.domain.identity import ApiKey, NotAuthenticated, Role

ACCOUNT = "111111111111"
DB_NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SECRET = "s" * 40


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def key_id(n: int) -> str:
    return f"SCK{n:017d}".replace("0", "A").replace("1", "B")[:20]


def stored(kid: str, *, expires_in: float | None = None, revoked: bool = False) -> StoredKey:
    return StoredKey(
        ApiKey(
            key_id=kid,
            account_id=ACCOUNT,
            role=Role.WRITER,
            created_at=DB_NOW,
            expires_at=None if expires_in is None else DB_NOW + timedelta(seconds=expires_in),
            revoked_at=DB_NOW if revoked else None,
        ),
        secret_hash(SECRET),
        f"sealed:{SECRET}",
        DB_NOW,
    )


class Box:
    def seal(self, plaintext: str, associated: str) -> str:
        return f"sealed:{plaintext}"

    def open(self, sealed: str, associated: str) -> str:
        return sealed.removeprefix("sealed:")


class CountingStore:
    """The identity port's key side, in memory, counting the lookups that reach its rows;
    its key lookups go through the cache as the Postgres store's do."""

    def __init__(self, clock: Clock, cache: KeyCache) -> None:
        self.rows: dict[str, StoredKey] = {}
        self.lookups = 0
        self.clock = clock
        self.cache = cache

    async def get_key(self, key_id: str) -> StoredKey | None:
        return await self.cache.lookup(key_id, self.read_key)

    async def read_key(self, key_id: str) -> StoredKey | None:
        self.lookups += 1
        found = self.rows.get(key_id)
        if found is None:
            return None
        # The database clock moves with the process's.
        return StoredKey(
            found.key, found.secret_hash, found.secret_sealed, DB_NOW + _elapsed(self.clock)
        )

    async def revoke_key(self, account_id: str, key_id: str) -> ApiKey | None:
        found = self.rows[key_id]
        key = ApiKey(
            found.key.key_id,
            found.key.account_id,
            found.key.role,
            found.key.created_at,
            found.key.expires_at,
            DB_NOW + _elapsed(self.clock),
        )
        self.rows[key_id] = StoredKey(key, found.secret_hash, found.secret_sealed, found.now)
        return key


START = 1000.0


def _elapsed(clock: Clock) -> timedelta:
    return timedelta(seconds=clock.t - START)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_nothing_is_used_before_a_heartbeat_proves_the_listener(clock: Clock) -> None:
    cache = KeyCache(1.0, clock=clock)
    cache.put("K", stored("K"), cache.generation())
    assert len(cache) == 1
    assert cache.get("K") is None
    cache.proven(clock())
    assert cache.get("K") is not None


def test_an_entry_is_used_only_while_the_last_heartbeat_sent_is_within_the_bound(
    clock: Clock,
) -> None:
    cache = KeyCache(1.0, clock=clock)
    cache.put("K", stored("K"), cache.generation())
    sent = clock()
    clock.advance(0.9)  # the heartbeat took 0.9 s to come back: its send time counts
    cache.proven(sent)
    assert cache.live() and cache.get("K") is not None
    clock.advance(0.1)
    assert not cache.live() and cache.get("K") is None
    # An older heartbeat coming back late proves nothing newer.
    cache.proven(sent - 5)
    assert cache.get("K") is None
    cache.proven(clock())
    assert cache.get("K") is not None
    cache.unproven()
    assert cache.get("K") is None


def test_expiry_is_judged_on_every_use_by_the_lookups_clock_moved_on(clock: Clock) -> None:
    cache = KeyCache(1.0, clock=clock)
    cache.put("K", stored("K", expires_in=5), cache.generation())
    clock.advance(4.5)
    cache.proven(clock())
    early = cache.get("K")
    assert early is not None and early.now == DB_NOW + timedelta(seconds=4.5)
    assert early.key.state(early.now) == "active"
    clock.advance(0.5)
    cache.proven(clock())
    late = cache.get("K")
    assert late is not None and late.key.state(late.now) == "expired"


def test_entries_are_bounded_least_recently_used_first(clock: Clock) -> None:
    cache = KeyCache(1.0, max_entries=3, clock=clock)
    cache.proven(clock())
    for kid in ("A", "B", "C"):
        cache.put(kid, stored(kid), cache.generation())
    assert cache.get("A") is not None  # A is now the most recent
    cache.put("D", stored("D"), cache.generation())
    assert len(cache) == 3
    assert cache.get("B") is None
    assert all(cache.get(kid) is not None for kid in ("A", "C", "D"))


def test_an_entry_is_read_again_after_its_maximum_age(clock: Clock) -> None:
    cache = KeyCache(1.0, max_age_seconds=60, clock=clock)
    cache.put("K", stored("K"), cache.generation())
    clock.advance(59.9)
    cache.proven(clock())
    assert cache.get("K") is not None
    clock.advance(0.1)
    cache.proven(clock())
    assert cache.get("K") is None and len(cache) == 0


def test_drop_and_clear_and_what_a_lookup_begun_before_them_brings_back(clock: Clock) -> None:
    cache = KeyCache(1.0, clock=clock)
    cache.proven(clock())
    for kid in ("A", "B"):
        cache.put(kid, stored(kid), cache.generation())
    cache.drop("A")
    assert cache.get("A") is None and cache.get("B") is not None
    cache.clear()
    assert len(cache) == 0
    # A lookup that began before a change was applied may hold the row before it.
    before = cache.generation()
    cache.drop("Z")
    cache.put("A", stored("A"), before)
    assert cache.get("A") is None
    cache.put("A", stored("A"), cache.generation())
    assert cache.get("A") is not None


def test_a_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        KeyCache(0)


def cached_identity(clock: Clock) -> tuple[Identity, CountingStore, KeyCache]:
    cache = KeyCache(1.0, clock=clock)
    cache.proven(clock())
    store = CountingStore(clock, cache)
    # Only the key side of the port is used here.
    return Identity(cast(IdentityStore, store), Box()), store, cache


async def test_the_cache_answers_the_lookup_but_the_secret_is_checked_every_call(
    clock: Clock,
) -> None:
    identity, store, _ = cached_identity(clock)
    kid = key_id(1)
    store.rows[kid] = stored(kid)
    for _ in range(3):
        assert (await identity.authenticate_token(f"{kid}.{SECRET}")).key_id == kid
    assert store.lookups == 1
    with pytest.raises(NotAuthenticated):
        await identity.authenticate_token(f"{kid}.{'t' * 40}")
    # SigV4: the kept row's sealed secret is opened; the signature is the caller's check.
    key, secret, _ = await identity.signing_secret(kid)
    assert (key.key_id, secret) == (kid, SECRET)
    assert store.lookups == 1


async def test_every_call_looks_up_while_the_cache_is_stale(clock: Clock) -> None:
    identity, store, cache = cached_identity(clock)
    kid = key_id(2)
    store.rows[kid] = stored(kid)
    await identity.authenticate_token(f"{kid}.{SECRET}")
    clock.advance(1.0)
    # Revoked elsewhere; the listener has proven nothing since: the row is read again.
    await store.revoke_key(ACCOUNT, kid)
    with pytest.raises(NotAuthenticated, match="revoked"):
        await identity.authenticate_token(f"{kid}.{SECRET}")
    assert store.lookups == 2
    assert not cache.live()


async def test_an_expiry_passes_while_the_key_is_kept(clock: Clock) -> None:
    identity, store, cache = cached_identity(clock)
    kid = key_id(3)
    store.rows[kid] = stored(kid, expires_in=2)
    await identity.authenticate_token(f"{kid}.{SECRET}")
    clock.advance(2.0)
    cache.proven(clock())
    with pytest.raises(NotAuthenticated, match="expired"):
        await identity.authenticate_token(f"{kid}.{SECRET}")
    assert store.lookups == 1


async def test_a_revoke_through_this_process_is_refused_on_the_next_call(clock: Clock) -> None:
    identity, store, cache = cached_identity(clock)
    kid = key_id(4)
    store.rows[kid] = stored(kid)
    await identity.authenticate_token(f"{kid}.{SECRET}")
    await store.revoke_key(ACCOUNT, kid)
    # What the Postgres store's revoke does once its statement is done.
    cache.drop(kid)
    with pytest.raises(NotAuthenticated, match="revoked"):
        await identity.authenticate_token(f"{kid}.{SECRET}")


async def test_unknown_keys_are_not_kept(clock: Clock) -> None:
    identity, store, cache = cached_identity(clock)
    for n in range(3):
        with pytest.raises(NotAuthenticated):
            await identity.authenticate_token(f"{key_id(10)}.{SECRET}")
        assert store.lookups == n + 1
    assert len(cache) == 0
