"""API keys kept for a moment after their lookup, used only while invalidation is proven.

Every authenticated call needs its key's row (`identity.GET_KEY`). `KeyCache` keeps the
rows looked up, by key id, and answers from them only while its listener
(`key_changes.KeyChangeListener`) has proven, within the last `bound_seconds`, that it
has applied every change to api_keys committed before then: the listener's heartbeat is
a notification of its own, sent on its LISTEN session, and notifications reach that
session in commit order, so once the heartbeat sent at time t is back, every key change
committed before t has been applied (its entry dropped). Hence:

- a key revoked, changed or deleted anywhere is refused by this process from at most
  `bound_seconds` after its commit (from the next call when it was revoked through this
  process: `PostgresIdentityStore.revoke_key` drops the entry at once);
- while the listener is down or late, every call looks its key up, as without a cache.

What is kept is the row the lookup returned, not a decision: the secret (or the SigV4
signature) is checked against it on every call, and expiry is judged on every call by
the database clock of the lookup plus the time elapsed since. Entries are dropped after
`max_age_seconds` whatever the listener says (a change made with triggers disabled is
not announced), and at most `max_entries` are kept (the least recently used go first).
Unknown key ids are not kept: a caller presenting made-up ids costs a lookup each, as
before, and cannot fill the cache."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta

from ...application.identity import StoredKey

MAX_ENTRIES = 10_000
# However live the listener, an entry is looked up again after this long.
MAX_AGE_SECONDS = 60.0


class KeyCache:
    """The kept rows and the proof that they are still current (see the module's text).
    Not thread-safe: used from one event loop."""

    def __init__(
        self,
        bound_seconds: float,
        *,
        max_entries: int = MAX_ENTRIES,
        max_age_seconds: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if bound_seconds <= 0:
            raise ValueError("a key cache needs a positive bound")
        if max_entries < 1:
            raise ValueError("a key cache holds at least one entry")
        self.bound_seconds = bound_seconds
        self.max_entries = max_entries
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        # key id -> (the lookup's row, when it was read by `clock`), least recent first.
        self._entries: OrderedDict[str, tuple[StoredKey, float]] = OrderedDict()
        # The send time of the latest heartbeat that came back; None: nothing proven.
        self._proven_at: float | None = None
        # Bumped by every drop and clear: a lookup that began before one is not kept.
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    # ----- the listener's side -----

    def proven(self, sent_at: float) -> None:
        """Every change committed before `sent_at` (by `clock`) has been applied."""
        if self._proven_at is None or sent_at > self._proven_at:
            self._proven_at = sent_at

    def unproven(self) -> None:
        """The listener lost its session: nothing is proven until it is back."""
        self._proven_at = None

    def live(self) -> bool:
        """True while entries may be used: the last proof is within the bound."""
        proven = self._proven_at
        return proven is not None and self._clock() - proven < self.bound_seconds

    def drop(self, key_id: str) -> None:
        self._generation += 1
        self._entries.pop(key_id, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    # ----- the lookup's side -----

    def generation(self) -> int:
        """Taken before a lookup, handed to `put` with its row."""
        return self._generation

    def get(self, key_id: str) -> StoredKey | None:
        """The kept row, its `now` moved on by the time since it was read; None when
        there is none or it may not be used (nothing proven within the bound)."""
        if not self.live():
            return None
        found = self._entries.get(key_id)
        if found is None:
            return None
        stored, read_at = found
        age = self._clock() - read_at
        if age >= self.max_age_seconds:
            del self._entries[key_id]
            return None
        self._entries.move_to_end(key_id)
        return replace(stored, now=_later(stored.now, age))

    def put(self, key_id: str, stored: StoredKey, generation: int) -> None:
        """Keeps a lookup's row, unless a change was applied since the lookup began (its
        row may predate that change)."""
        if generation != self._generation:
            return
        self._entries[key_id] = (stored, self._clock())
        self._entries.move_to_end(key_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def lookup(
        self, key_id: str, read: Callable[[str], Awaitable[StoredKey | None]]
    ) -> StoredKey | None:
        """The kept row when it may be used; otherwise `read(key_id)`'s, kept for later
        when there is one (unknown key ids are not kept: made-up ids cannot fill it)."""
        cached = self.get(key_id)
        if cached is not None:
            return cached
        generation = self._generation
        stored = await read(key_id)
        if stored is not None:
            self.put(key_id, stored, generation)
        return stored


def _later(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=max(seconds, 0.0))
