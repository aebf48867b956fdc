"""Computed page data, kept until the store changes or the quarter-hour turns.

A page of the portal is a pure function of (who asks, what is asked, the store's content, the
current quarter-hour): prices "as known now" change status at quarter boundaries, and everything
else changes only when something is written (an import, a settle run, a bill run, a new community
definition). So a view's data is computed once per key and data version, and served from memory
until either changes. Rendering the template stays per request (it holds the CSRF token).

The data version is one cheap query (the highest row id of each table that pages read, each an
index lookup; about 0.4 ms on SQLite) made on every request, or at most once per ``ttl_s`` seconds
when a server allows a write that long to show (`kwartier serve`: 1 s). Each uvicorn worker keeps
its own cache; nothing personal leaves the process.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from kwartier.store import schema, schema_governance
from kwartier.timegrid import floor_to_grid

T = TypeVar("T")
SHARED_KEEP = timedelta(days=40)  # shared entries older than this are dropped (a month's data, and some)

#: What changes when a page's content can: the highest id of every table pages read (invoices, never
#: deleted and keyed by number, by their count; consents, append-only). Each is an index lookup.
WATCHED = {"imports": func.max(schema.imports.c.id), "readings": func.max(schema.readings.c.id),
           "prices": func.max(schema.prices.c.id), "entities": func.max(schema.entities.c.id),
           "settle_runs": func.max(schema.settle_runs.c.id), "journal": func.max(schema.journal.c.seq),
           "invoices": func.count(schema.invoices.c.number), "consents": func.max(schema_governance.consents.c.id)}
PARTS = tuple(WATCHED)


class ViewCache:
    """A bounded, thread-safe LRU of computed view data, keyed by (view, key, data version, quarter)."""

    def __init__(self, engine: Engine, *, maxsize: int = 4096, ttl_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.maxsize = maxsize
        self.ttl_s = ttl_s
        self._clock = clock
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._version: tuple[int, ...] | None = None
        self._version_at = float("-inf")
        self.hits = 0
        self.misses = 0
        self.shared_hits = 0

    def data_version(self) -> tuple[int, ...]:
        """The highest id of every watched table, re-read at most once per ``ttl_s`` seconds."""
        now = self._clock()
        if self._version is None or now - self._version_at >= self.ttl_s:
            query = select(*[select(w).scalar_subquery() for w in WATCHED.values()])
            with self.engine.connect() as conn:
                row = conn.execute(query).one()
            self._version = tuple(v or 0 for v in row)
            self._version_at = now
        return self._version

    def get(self, view: str, key: Hashable, compute: Callable[[], T], *, per_quarter: bool = True,
            watch: tuple[str, ...] = PARTS, shared: bool = False) -> T:
        """The view's data for ``key`` in the current data version (and quarter), computed on a miss.

        ``per_quarter=False`` for data that does not depend on the time of asking (a billed month's
        what-ifs, the invoice list). Two requests that miss at once may both compute; the result is
        the same, the last one stays. ``watch`` names the parts of the data version (``PARTS``) the
        data depends on: a write elsewhere (a vote in the journal, say) then does not throw it away. ``shared=True``
        for costly data that is JSON (a month's what-ifs): it is also kept in the store's
        ``view_cache`` table, so the other worker processes, and a restarted server, read it instead
        of computing it again.
        """
        quarter = floor_to_grid(datetime.now(UTC)) if per_quarter else None
        version = dict(zip(PARTS, self.data_version(), strict=True))
        full = (view, key, tuple(version[p] for p in watch), quarter)
        with self._lock:
            if full in self._items:
                self._items.move_to_end(full)
                self.hits += 1
                return self._items[full]  # type: ignore[no-any-return]
        self.misses += 1
        value = self._shared(full, compute) if shared else compute()
        with self._lock:
            self._items[full] = value
            self._items.move_to_end(full)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value

    def _shared(self, full: tuple[object, ...], compute: Callable[[], T]) -> T:
        """The value stored for ``full`` in the view_cache table, else computed and stored."""
        digest = hashlib.sha256(repr(full).encode()).hexdigest()
        table = schema.view_cache
        with self.engine.connect() as conn:
            found = conn.execute(select(table.c.value).where(table.c.key == digest)).scalar()
        if found is not None:
            self.shared_hits += 1
            return found  # type: ignore[no-any-return]
        value = compute()
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(table).where(table.c.created_at < now - SHARED_KEEP))
                conn.execute(insert(table).values(key=digest, value=value, created_at=now))
        except SQLAlchemyError:  # another worker stored it meanwhile, or the store is busy: a cache may miss
            pass
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._version = None
