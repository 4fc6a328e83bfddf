"""The command service: the one way in for every read and change of a twin.

Every adapter calls these methods with a command from :mod:`edgetwin.core.commands` and the caller's
:class:`~edgetwin.core.commands.AuthContext`. Reads use a read transaction directly (never across an
await). A change is a *write function* handed to the single :class:`~edgetwin.core.writer.StoreWriter`:
it runs inside the write transaction against the latest committed state, so that condition, preconditions,
the pure change (``twin.things``), validation, size limit and revision bump all see the same state and no
concurrent update is lost. The event is published from the writer's after-commit hook, after the write is
durable and in commit order.

Order of checks for a write (Ditto's ``AbstractThingCommandStrategy``): the thing must exist (except for a
create), then ``condition``, then ``If-Match`` / ``If-None-Match``, then ``if-equal``, then the change.

Every write method takes ``on_queued`` (see :meth:`StoreWriter.submit <edgetwin.core.writer.StoreWriter.
submit>`): called once the write has its place in the writer's queue, so an adapter that pipelines commands
(a WebSocket session) hands over the next one without waiting for durability and still keeps their order.

The live channel (:mod:`edgetwin.core.live`) reads a :class:`TwinSnapshot` and asks for the enforcers,
views and conditions it needs through :meth:`TwinService.snapshot`, :meth:`~TwinService.enforcer`,
:meth:`~TwinService.view`, :meth:`~TwinService.check_condition` and
:meth:`~TwinService.live_condition_holds`.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import orjson

import edgetwin.core.search as search_engine
from edgetwin import rql
from edgetwin.core.commands import (
    AuthContext,
    CountThings,
    CreateThing,
    DeletePolicy,
    DeleteThing,
    MergeThing,
    ModifyPolicy,
    ModifyThing,
    Preconditions,
    Retrieved,
    RetrievePolicy,
    RetrieveThing,
    RetrieveThings,
    SearchResult,
    SearchThings,
    Written,
)
from edgetwin.core.enforcement import EnforcerCache, condition_unreadable, not_modifiable
from edgetwin.core.events import ThingEvent
from edgetwin.errors import (
    InvalidInput,
    NotFound,
    NotModified,
    PayloadTooLarge,
    PolicyDenied,
    PreconditionFailed,
    RqlSyntaxError,
)
from edgetwin.store import journal
from edgetwin.store.policies import delete_policy, get_policy, get_policy_entries, put_policy
from edgetwin.store.things import delete_thing, get_thing, put_thing
from edgetwin.twin import things as resources
from edgetwin.twin.fields import FieldSelector, apply_fields
from edgetwin.twin.ids import (
    generate_thing_id,
    is_valid_namespace,
    namespace_of,
    parse_policy_id,
    parse_thing_id,
)
from edgetwin.twin.pointer import MISSING, Json, Missing, Pointer, get_at
from edgetwin.twin.policy import Enforcer, check_policy_manageable, default_policy, parse_policy
from edgetwin.twin.policy_resources import (
    apply_policy_delete,
    apply_policy_put,
    lookup_policy,
    policy_resource_of,
)
from edgetwin.twin.preconditions import check_if_equal, check_preconditions, thing_etag, value_etag

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    import trio

    from edgetwin.core.bus import EventBus
    from edgetwin.core.writer import StoreWriter
    from edgetwin.store import ReadTxn, Store, WriteTxn

__all__ = ["DEFAULT_NAMESPACE", "MAX_THING_BYTES", "JournalPage", "TwinService", "TwinSnapshot"]

DEFAULT_NAMESPACE: Final = "org.eclipse.ditto"
MAX_THING_BYTES: Final = 100 * 1024  # Ditto's default limit (things:thing.toolarge)
_TOMBSTONES: Final = b"tombstone\x00"  # revision of a deleted thing, so a re-created one continues it
_SEARCH_DEFAULT_FIELDS: Final = ("thingId", "policyId", "definition", "attributes", "features")


def _iso(ts: float) -> str:
    return (
        datetime.datetime.fromtimestamp(ts, datetime.UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


@dataclass(frozen=True, slots=True)
class JournalPage:
    """Events read back from the event journal (:meth:`TwinService.replay`).

    ``first_seq`` is the oldest sequence number still retained (``None``: the journal is empty) and
    ``last_seq`` the newest ever handed out, so a reader can tell whether events it asked for were pruned.
    """

    events: list[ThingEvent]
    first_seq: int | None
    last_seq: int


@dataclass(frozen=True, slots=True)
class TwinSnapshot:
    """A thing and its policy's entries as read at one moment (:meth:`TwinService.snapshot`): the live
    router checks the sender and every receiver against the same state. ``entries`` is ``None`` when the
    policy is gone (nobody may access the thing)."""

    thing_id: str
    stored: dict[str, Json]
    entries: bytes | None


def _epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


def _partial_thing(event: ThingEvent) -> dict[str, Json]:
    """Ditto's thing reconstructed from an event, without ``thingId``: the changed part at its place."""
    if event.action == "deleted":
        return {}
    if not event.path:
        value = event.value
        if not isinstance(value, dict):
            return {}
        return {k: v for k, v in value.items() if k != "thingId" and not k.startswith("_")}
    node: Json = event.value
    for key in reversed(event.path):
        node = {key: node}
    return node  # type: ignore[return-value]


def _deep_merge(base: dict[str, Json], over: dict[str, Json]) -> dict[str, Json]:
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            out[key] = _deep_merge(below, value)
        else:
            out[key] = value
    return out


def _with_hidden(thing: dict[str, Json]) -> dict[str, Json]:
    """The thing as conditions and field selectors see it: with ``_namespace`` derived."""
    return {**thing, "_namespace": namespace_of(str(thing["thingId"]))}


class TwinService:
    """Executes commands against the store.

    Args:
        store: the open store (read side).
        writer: the single writer (write side).
        bus: where committed events are published.
        now: the wall clock (seconds since the epoch); tests pass their own.
        journal_max_events: the event journal keeps at most this many events (``journal.max_events``).
        journal_max_age_s: and none older than this (``journal.max_age_s``).
        journal_max_bytes: and at most this many bytes of them (``journal.max_mb``).
    """

    def __init__(
        self,
        store: Store,
        writer: StoreWriter,
        bus: EventBus,
        *,
        now: Callable[[], float] = time.time,
        journal_max_events: int = 100_000,
        journal_max_age_s: float = 604_800.0,
        journal_max_bytes: int | None = None,
    ) -> None:
        self._store = store
        self._writer = writer
        self._bus = bus
        self._now = now
        self._enforcers = EnforcerCache()
        self._journal_max_events = journal_max_events
        self._journal_max_age_s = journal_max_age_s
        self._journal_max_bytes = journal_max_bytes

    def _iso_now(self) -> str:
        return _iso(self._now())

    # ------------------------------------------------------------------ reads

    async def retrieve(self, cmd: RetrieveThing, auth: AuthContext) -> Retrieved:
        """``GET /things/{id}[/path]``.

        Raises:
            NotFound: the thing or the resource does not exist.
            NotModified: ``If-None-Match`` matched.
            PreconditionFailed: ``If-Match`` or ``condition`` did not hold.
        """
        thing_id = parse_thing_id(cmd.thing_id)
        resources.resource_of(cmd.path)
        with self._store.read() as r:
            stored = get_thing(r, thing_id)
            enforcer = None if stored is None else self._access(r, stored, auth)
            policy = self._policy_for_fields(r, stored, cmd.fields, enforcer)
        if stored is None or enforcer is None or not enforcer.partial("thing", (), "READ"):
            if stored is None:
                self._check_preconditions(cmd.preconditions, "GET", None)
            raise resources.not_found(thing_id, ())
        if cmd.preconditions.condition is not None:
            self._check_condition(cmd.preconditions, stored, _iso(self._now()), enforcer)
        public = resources.public_view(stored)
        if not cmd.path:
            etag = thing_etag(int(stored["_revision"]))
            if not (cmd.fields and "_policy" in cmd.fields.text):  # Ditto exempts _policy selections
                self._check_preconditions(cmd.preconditions, "GET", etag)
            view = self._readable(enforcer, stored, public)
            value: Json = self._select(view, stored, cmd.fields, policy) if cmd.fields else view
            return Retrieved(value, etag)
        if not enforcer.partial("thing", cmd.path, "READ"):
            raise resources.not_found(thing_id, cmd.path)
        current = get_at(public, cmd.path)
        etag_or_none = None if current is MISSING else value_etag(current)
        self._check_preconditions(cmd.preconditions, "GET", etag_or_none)
        found = enforcer.readable_view(resources.lookup(public, thing_id, cmd.path), at=cmd.path)
        if found is MISSING:
            raise resources.not_found(thing_id, cmd.path)
        value = found
        if cmd.fields is not None:
            if not isinstance(value, dict):
                raise InvalidInput(
                    "Field selectors apply only to JSON objects.", error_code="json.fieldselector.invalid"
                )
            value = apply_fields(value, cmd.fields)
        return Retrieved(value, etag_or_none)

    async def retrieve_many(self, cmd: RetrieveThings, auth: AuthContext) -> list[Json]:
        """``GET /things?ids=...``: unknown ids are left out; order follows ``ids``."""
        ids = [parse_thing_id(i) for i in cmd.thing_ids]
        out: list[Json] = []
        with self._store.read() as r:
            for thing_id in dict.fromkeys(ids):
                stored = get_thing(r, thing_id)
                enforcer = None if stored is None else self._access(r, stored, auth)
                if stored is None or enforcer is None or not enforcer.partial("thing", (), "READ"):
                    continue  # unknown and unreadable things are silently left out
                view = self._readable(enforcer, stored)
                policy = self._policy_for_fields(r, stored, cmd.fields, enforcer)
                out.append(self._select(view, stored, cmd.fields, policy) if cmd.fields else view)
        return out

    async def search(self, cmd: SearchThings, auth: AuthContext) -> SearchResult:
        """``/search/things`` and ``GET /things`` without ids.

        Raises:
            InvalidInput: a malformed filter (``rql.expression.invalid``), option or cursor
                (``thing-search:search.option.invalid``) or namespace.
        """
        node = self._parse_filter(cmd.filter)
        options = rql.parse_options(cmd.option) if cmd.option else rql.SearchOptions()
        namespaces = self._namespaces(cmd.namespaces)
        now = _iso(self._now())
        with self._store.read() as r:
            visible = self._visible(r, auth)
            page = search_engine.search(
                r, filter=node, namespaces=namespaces, options=options, now=now, visible=visible
            )
            items: list[Json] = []
            for view in page.items:
                if cmd.fields is None:
                    items.append({k: view[k] for k in _SEARCH_DEFAULT_FIELDS if k in view})
                else:
                    stored = {k: v for k, v in view.items() if k.startswith("_") or k == "thingId"}
                    policy = self._policy_for_fields(r, view, cmd.fields, self._access(r, view, auth))
                    items.append(self._select(resources.public_view(view), stored, cmd.fields, policy))
        return SearchResult(items, page.cursor)

    async def count(self, cmd: CountThings, auth: AuthContext) -> int:
        """``/search/things/count``."""
        node = self._parse_filter(cmd.filter)
        namespaces = self._namespaces(cmd.namespaces)
        now = _iso(self._now())
        with self._store.read() as r:
            visible = self._visible(r, auth)
            return search_engine.count(r, filter=node, namespaces=namespaces, now=now, visible=visible)

    # ----------------------------------------------------------------- writes

    async def modify(
        self, cmd: ModifyThing, auth: AuthContext, *, on_queued: Callable[[], None] | None = None
    ) -> Written:
        """``PUT /things/{id}[/path]``: 201 when the resource was created, else 204."""
        thing_id = parse_thing_id(cmd.thing_id)
        resources.resource_of(cmd.path)
        timestamp = self._now()

        def write(w: WriteTxn) -> tuple[Written, ThingEvent]:
            stored = get_thing(w, thing_id)
            now = _iso(timestamp)
            if stored is None:
                if cmd.path:
                    raise resources.not_found(thing_id, ())
                self._check_preconditions(cmd.preconditions, "PUT", None)
                new, _ = resources.apply_put(None, thing_id, (), cmd.value)
                return self._create(w, auth, thing_id, new, now, cmd.initial_policy, cmd.copy_policy_from)
            enforcer = self._writable(w, stored, auth, thing_id)
            if not enforcer.unrestricted("thing", cmd.path, "WRITE"):
                raise not_modifiable(thing_id, cmd.path)
            public, current = self._checked_target(cmd.preconditions, stored, enforcer, cmd.path, "PUT", now)
            check_if_equal(
                cmd.preconditions.if_equal,
                self._comparable(current, cmd.path),
                self._comparable(cmd.value, cmd.path),
            )
            new, created = resources.apply_put(public, thing_id, cmd.path, cmd.value)
            if not cmd.path:
                self._check_policy_exists(w, new)
            return self._commit(
                w,
                stored,
                new,
                now,
                "created" if created else "modified",
                cmd.path,
                cmd.value,
                auth,
                status=201 if created else 204,
            )

        return await self._submit(write, on_queued)

    async def create(
        self, cmd: CreateThing, auth: AuthContext, *, on_queued: Callable[[], None] | None = None
    ) -> Written:
        """``POST /things``: a new thing with a generated id (201)."""
        namespace = DEFAULT_NAMESPACE if cmd.namespace is None else cmd.namespace
        if not isinstance(cmd.value, dict):
            raise InvalidInput("The Thing must be a JSON object.", error_code="json.format.invalid")
        if "thingId" in cmd.value:
            raise InvalidInput(
                "It is not allowed to provide a Thing ID in the request body for method POST. The method POST "
                "will generate the ID of the Thing.",
                description="To provide a custom Thing ID you have to use the method PUT.",
                error_code="things:id.notsettable",
            )
        thing_id = generate_thing_id(namespace)
        timestamp = self._now()

        def write(w: WriteTxn) -> tuple[Written, ThingEvent]:
            new, _ = resources.apply_put(None, thing_id, (), cmd.value)
            return self._create(
                w, auth, thing_id, new, _iso(timestamp), cmd.initial_policy, cmd.copy_policy_from
            )

        return await self._submit(write, on_queued)

    async def merge(
        self, cmd: MergeThing, auth: AuthContext, *, on_queued: Callable[[], None] | None = None
    ) -> Written:
        """``PATCH /things/{id}[/path]`` (RFC 7396): 204, or 201 when a root merge created the thing."""
        thing_id = parse_thing_id(cmd.thing_id)
        resources.resource_of(cmd.path)
        timestamp = self._now()

        def write(w: WriteTxn) -> tuple[Written, ThingEvent]:
            stored = get_thing(w, thing_id)
            now = _iso(timestamp)
            if stored is None:
                new, _ = resources.apply_merge(None, thing_id, cmd.path, cmd.patch)
                self._check_preconditions(cmd.preconditions, "PATCH", None)
                return self._create(w, auth, thing_id, new, now, None, None)
            enforcer = self._writable(w, stored, auth, thing_id)
            if not enforcer.may_merge(cmd.path, cmd.patch):
                raise not_modifiable(thing_id, cmd.path)
            public, current = self._checked_target(
                cmd.preconditions, stored, enforcer, cmd.path, "PATCH", now
            )
            patch = check_if_equal(
                cmd.preconditions.if_equal,
                self._comparable(current, cmd.path),
                self._comparable(cmd.patch, cmd.path),
                merge=True,
            )
            new, _ = resources.apply_merge(public, thing_id, cmd.path, patch)
            if "policyId" in new and new.get("policyId") != public.get("policyId"):
                self._check_policy_exists(w, new)
            return self._commit(w, stored, new, now, "merged", cmd.path, patch, auth, status=204)

        return await self._submit(write, on_queued)

    async def delete(
        self, cmd: DeleteThing, auth: AuthContext, *, on_queued: Callable[[], None] | None = None
    ) -> Written:
        """``DELETE /things/{id}[/path]`` (204). Deleting a thing keeps its policy (Ditto)."""
        thing_id = parse_thing_id(cmd.thing_id)
        resources.resource_of(cmd.path)
        timestamp = self._now()

        def write(w: WriteTxn) -> tuple[Written, ThingEvent]:
            stored = get_thing(w, thing_id)
            now = _iso(timestamp)
            if stored is None:
                self._check_preconditions(cmd.preconditions, "DELETE", None)
                raise resources.not_found(thing_id, ())
            enforcer = self._writable(w, stored, auth, thing_id)
            if not enforcer.unrestricted("thing", cmd.path, "WRITE"):
                raise not_modifiable(thing_id, cmd.path, delete=True)
            public, _ = self._checked_target(cmd.preconditions, stored, enforcer, cmd.path, "DELETE", now)
            revision = int(stored["_revision"]) + 1
            if not cmd.path:
                delete_thing(w, thing_id, previous=stored)
                w.put("kv", _TOMBSTONES + thing_id.encode(), str(revision).encode())
                event = ThingEvent(
                    "deleted",
                    thing_id,
                    (),
                    None,
                    revision,
                    now,
                    None,
                    auth.correlation_id,
                    policy_id=str(stored["policyId"]) if "policyId" in stored else None,
                )
                return Written(204, thing_id, revision), event
            new = resources.apply_delete(public, thing_id, cmd.path)
            return self._commit(w, stored, new, now, "deleted", cmd.path, None, auth, status=204, etag=False)

        return await self._submit(write, on_queued)

    # --------------------------------------------------------------- policies

    async def retrieve_policy(self, cmd: RetrievePolicy, auth: AuthContext) -> Retrieved:
        """``GET /policies/{id}[/path]``, filtered to what the caller may READ (404 if nothing)."""
        policy_id = parse_policy_id(cmd.policy_id)
        policy_resource_of(cmd.path)
        now = _iso(self._now())
        with self._store.read() as r:
            found_policy = get_policy(r, policy_id)
            entries = get_policy_entries(r, policy_id)
        enforcer = self._enforcers.get(entries, auth.subjects, namespace_of(policy_id), now)
        if found_policy is None or enforcer is None or not enforcer.partial("policy", (), "READ"):
            if found_policy is None:
                self._check_preconditions(cmd.preconditions, "GET", None, policies=True)
            raise _policy_not_found(policy_id)
        stored = found_policy
        public = {k: v for k, v in stored.items() if not k.startswith("_")}
        if not cmd.path:
            etag = thing_etag(int(stored["_revision"]))
            self._check_preconditions(cmd.preconditions, "GET", etag, policies=True)
            view = enforcer.readable_view(public, resource_type="policy")
            value: Json = {"policyId": policy_id, **(view if isinstance(view, dict) else {})}
            if cmd.fields is not None:
                hidden = {k: v for k, v in stored.items() if k.startswith("_")}
                value = apply_fields({**value, **hidden}, cmd.fields)  # type: ignore[dict-item]
            return Retrieved(value, etag)
        if not enforcer.partial("policy", cmd.path, "READ"):
            raise _policy_not_found(policy_id)
        found = lookup_policy(public, policy_id, cmd.path)
        etag_or_none = value_etag(found)
        self._check_preconditions(cmd.preconditions, "GET", etag_or_none, policies=True)
        view_at = enforcer.readable_view(found, resource_type="policy", at=cmd.path)
        if view_at is MISSING:
            raise _policy_not_found(policy_id)
        if cmd.fields is not None and isinstance(view_at, dict):
            view_at = apply_fields(view_at, cmd.fields)
        return Retrieved(view_at, etag_or_none)

    async def modify_policy(
        self, cmd: ModifyPolicy, auth: AuthContext, *, on_queued: Callable[[], None] | None = None
    ) -> Written:
        """``PUT /policies/{id}[/path]``: 201 when created, else 204.

        Raises:
            PolicyDenied: no WRITE permission (``policies:policy.notmodifiable``), or the result would
                leave nobody able to manage the policy, or lock the caller out without
                ``allow-policy-lockout`` (``policies:policy.modificationinvalid``).
        """
        policy_id = parse_policy_id(cmd.policy_id)
        policy_resource_of(cmd.path)
        timestamp = self._now()

        def write(w: WriteTxn) -> tuple[Written, None]:
            now = _iso(timestamp)
            existing = get_policy(w, policy_id)
            if existing is None:
                if cmd.path:
                    raise _policy_not_found(policy_id)
                self._check_preconditions(cmd.preconditions, "PUT", None, policies=True)
                new, _ = apply_policy_put(None, policy_id, (), cmd.value)
                self._check_manageable(new, auth, now, allow_lockout=cmd.allow_lockout)
                stored_new = {**new, "_revision": 1, "_created": now, "_modified": now}
                put_policy(w, stored_new)
                return Written(201, policy_id, 1, thing_etag(1), new), None
            stored = existing
            self._policy_writer(w, policy_id, cmd.path, auth, now)
            public = {k: v for k, v in stored.items() if not k.startswith("_")}
            current = get_at(public, cmd.path)
            etag = (
                thing_etag(int(stored["_revision"]))
                if not cmd.path
                else (None if current is MISSING else value_etag(current))
            )
            self._check_preconditions(cmd.preconditions, "PUT", etag, policies=True)
            new, created = apply_policy_put(public, policy_id, cmd.path, cmd.value)
            self._check_manageable(new, auth, now, allow_lockout=cmd.allow_lockout)
            return self._store_policy(w, stored, new, now, cmd.path, status=201 if created else 204), None

        result, _ = await self._writer.submit(write, on_queued=on_queued)
        return result

    async def delete_policy(
        self, cmd: DeletePolicy, auth: AuthContext, *, on_queued: Callable[[], None] | None = None
    ) -> Written:
        """``DELETE /policies/{id}[/path]`` (204). Things governed by a deleted policy become inaccessible."""
        policy_id = parse_policy_id(cmd.policy_id)
        policy_resource_of(cmd.path)
        timestamp = self._now()

        def write(w: WriteTxn) -> tuple[Written, None]:
            now = _iso(timestamp)
            existing = get_policy(w, policy_id)
            if existing is None:
                self._check_preconditions(cmd.preconditions, "DELETE", None, policies=True)
                raise _policy_not_found(policy_id)
            self._policy_writer(w, policy_id, cmd.path, auth, now)
            stored = existing
            public = {k: v for k, v in stored.items() if not k.startswith("_")}
            revision = int(stored["_revision"]) + 1
            if not cmd.path:
                self._check_preconditions(
                    cmd.preconditions, "DELETE", thing_etag(int(stored["_revision"])), policies=True
                )
                delete_policy(w, policy_id)
                return Written(204, policy_id, revision), None
            current = get_at(public, cmd.path)
            self._check_preconditions(
                cmd.preconditions,
                "DELETE",
                None if current is MISSING else value_etag(current),
                policies=True,
            )
            new = apply_policy_delete(public, policy_id, cmd.path)
            self._check_manageable(new, auth, now, allow_lockout=True)
            return self._store_policy(w, stored, new, now, cmd.path, status=204, etag=False), None

        result, _ = await self._writer.submit(write, on_queued=on_queued)
        return result

    def _policy_writer(self, w: ReadTxn, policy_id: str, path: Pointer, auth: AuthContext, now: str) -> None:
        """A policy write needs unrestricted WRITE at ``path`` (403); a caller who may neither read nor write
        the policy learns nothing of it (404) — the policy twin of :meth:`_writable`."""
        enforcer = self._enforcers.get(
            get_policy_entries(w, policy_id), auth.subjects, namespace_of(policy_id), now
        )
        if enforcer is None or not (
            enforcer.partial("policy", (), "READ") or enforcer.partial("policy", (), "WRITE")
        ):
            raise _policy_not_found(policy_id)
        if not enforcer.unrestricted("policy", path, "WRITE"):
            raise _policy_not_modifiable(policy_id)

    def _check_manageable(
        self, policy: dict[str, Json], auth: AuthContext, now: str, *, allow_lockout: bool
    ) -> None:
        check_policy_manageable(policy, now=now)
        if allow_lockout:
            return
        if not Enforcer.build(policy, auth.subjects, now=now).unrestricted("policy", (), "WRITE"):
            raise PolicyDenied(
                "The Policy would not give the requester WRITE permission on 'policy:/'; it would lock the"
                " requester out.",
                description="Include the requester with WRITE on 'policy:/', or send the header"
                " 'allow-policy-lockout: true'.",
                error_code="policies:policy.modificationinvalid",
            )

    @staticmethod
    def _store_policy(
        w: WriteTxn,
        stored: dict[str, Json],
        public: dict[str, Json],
        now: str,
        path: Pointer,
        *,
        status: int,
        etag: bool = True,
    ) -> Written:
        revision = int(stored["_revision"]) + 1  # type: ignore[arg-type]
        put_policy(
            w, {**public, "_revision": revision, "_created": stored.get("_created", now), "_modified": now}
        )
        tag = None
        value: Json = None
        if etag:
            tag = (
                thing_etag(revision)
                if not path
                else value_etag(lookup_policy(public, str(public["policyId"]), path))
            )
        if status == 201:
            value = lookup_policy(public, str(public["policyId"]), path) if path else public
        return Written(status, str(public["policyId"]), revision, tag, value)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- helpers

    async def _submit(
        self,
        write: Callable[[WriteTxn], tuple[Written, ThingEvent]],
        on_queued: Callable[[], None] | None = None,
    ) -> Written:
        def journaled(w: WriteTxn) -> tuple[Written, ThingEvent]:
            written, event = write(w)
            return written, self._journal(w, event)

        result, _ = await self._writer.submit(journaled, after_commit=self._publish, on_queued=on_queued)
        return result

    def _journal(self, w: WriteTxn, event: ThingEvent) -> ThingEvent:
        """Journal ``event`` in the change's own transaction (so both commit or neither) and prune a few
        events beyond retention; returns the event with its sequence number."""
        policy_id = event.policy_id
        if policy_id is None and event.thing is not None and "policyId" in event.thing:
            policy_id = str(event.thing["policyId"])
        seq = journal.append(
            w,
            action=event.action,
            thing_id=event.thing_id,
            path=event.path,
            value=event.value,
            revision=event.revision,
            timestamp=event.timestamp,
            policy_id=policy_id,
            correlation_id=event.correlation_id,
        )
        # The cutoff comes from the event's own time, not the clock: a write function must be pure over its
        # transaction (the writer may replay it after growing the map).
        oldest = _iso(_epoch(event.timestamp) - self._journal_max_age_s)
        journal.prune(
            w, max_events=self._journal_max_events, oldest_timestamp=oldest, max_bytes=self._journal_max_bytes
        )
        return replace(event, seq=seq, policy_id=policy_id)

    # ------------------------------------------------------------------ live

    def snapshot(self, thing_id: str) -> TwinSnapshot | None:
        """The stored thing and its policy entries, read in one short transaction (``None``: no such thing).

        Raises:
            InvalidInput: ``things:id.invalid``.
        """
        thing_id = parse_thing_id(thing_id)
        with self._store.read() as r:
            stored = get_thing(r, thing_id)
            if stored is None:
                return None
            entries = get_policy_entries(r, str(stored.get("policyId", "")))
        return TwinSnapshot(thing_id, stored, entries)

    def enforcer(self, snapshot: TwinSnapshot, auth: AuthContext) -> Enforcer | None:
        """``auth``'s enforcer under the snapshot's policy (``None``: the policy is gone)."""
        if snapshot.entries is None:
            return None
        return self._enforcers.get(
            snapshot.entries, auth.subjects, namespace_of(snapshot.thing_id), self._iso_now
        )

    def view(self, snapshot: TwinSnapshot, enforcer: Enforcer) -> dict[str, Json]:
        """What the enforcer's subjects may READ of the snapshot's thing, hidden fields kept (for filters)."""
        stored = snapshot.stored
        if enforcer.unrestricted("thing", (), "READ"):
            return _with_hidden(stored)
        view = self._readable(enforcer, stored)
        return _with_hidden({**view, **{k: v for k, v in stored.items() if k.startswith("_")}})

    def check_condition(self, snapshot: TwinSnapshot, condition: str | None, enforcer: Enforcer) -> None:
        """Ditto's ``condition`` on a live command or message, evaluated on the twin (ditto.md §8).

        Raises:
            InvalidInput: ``things:condition.invalid``.
            PreconditionFailed: ``things:condition.failed`` (not met, or its fields are not readable).
        """
        self._check_condition(Preconditions(condition=condition), snapshot.stored, self._iso_now(), enforcer)

    def live_condition_holds(self, snapshot: TwinSnapshot, condition: str, enforcer: Enforcer) -> bool:
        """Whether the smart channel's ``live-channel-condition`` holds on the twin (ditto.md §1.10).

        Raises:
            InvalidInput: ``things:condition.invalid`` for malformed RQL.
            PreconditionFailed: ``things:condition.failed`` when the caller may not READ its fields.
        """
        return self._condition_holds(
            condition, snapshot.stored, self._iso_now(), enforcer, what="live channel condition"
        )

    # ---------------------------------------------------------------- events

    def subscribe(
        self, *, buffer: int | None = None
    ) -> AbstractContextManager[trio.MemoryReceiveChannel[ThingEvent]]:
        """Live events committed while the block is open (see :meth:`EventBus.subscribe`)."""
        return self._bus.subscribe(buffer=buffer)

    def replay(self, after_seq: int, *, limit: int) -> JournalPage:
        """Up to ``limit`` journaled events with a sequence number above ``after_seq``, oldest first.

        Replayed events carry no ``thing`` (the journal does not keep it); events older than the retention
        age that were not pruned yet are left out too. Synchronous: one short read transaction.
        """
        oldest = _iso(self._now() - self._journal_max_age_s)
        events: list[ThingEvent] = []
        with self._store.read() as r:
            first, last = journal.first_seq(r), journal.last_seq(r)
            for record in journal.iter_from(r, after_seq):
                if len(events) >= limit:
                    break
                if record.timestamp < oldest:
                    first = record.seq + 1
                    continue
                events.append(
                    ThingEvent(
                        record.action,  # type: ignore[arg-type]
                        record.thing_id,
                        record.path,
                        record.value,
                        record.revision,
                        record.timestamp,
                        None,
                        record.correlation_id,
                        seq=record.seq,
                        policy_id=record.policy_id,
                    )
                )
        return JournalPage(events, first, last)

    def event_view(
        self, event: ThingEvent, auth: AuthContext
    ) -> tuple[ThingEvent, dict[str, Json] | None] | None:
        """What ``auth`` may see of a live ``event`` (the WebSocket's shape; SSE uses :meth:`partial_thing`).

        Returns:
            ``None`` when ``auth`` may READ nothing of the change (checked now, against the current entries
            of the event's policy); else the event with its ``value`` reduced to the readable leaves and
            ``thing`` replaced by the caller's view, plus that view of the thing after the change with the
            hidden fields (``_revision``, ``_modified``, ``_namespace``, ...) for filters and ``extraFields``
            (``None`` after the whole thing was deleted, or for a replayed event, which carries no thing).
        """
        enforcer = self._event_enforcer(event, auth)
        if enforcer is None or not enforcer.partial("thing", event.path, "READ"):
            return None
        value: Json = None
        if event.action != "deleted":
            readable = enforcer.readable_view(event.value, at=event.path)
            if readable is MISSING:
                return None
            value = readable
        thing_view = None
        if event.thing is not None:
            view = self._readable(enforcer, event.thing)
            thing_view = _with_hidden({**view, **{k: v for k, v in event.thing.items() if k.startswith("_")}})
        return replace(event, value=value, thing=None if thing_view is None else view), thing_view

    def _event_enforcer(self, event: ThingEvent, auth: AuthContext) -> Enforcer | None:
        if event.policy_id is None and event.thing is not None:
            policy_id: Json = event.thing.get("policyId")
        else:
            policy_id = event.policy_id
        with self._store.read() as r:
            raw = None if policy_id is None else get_policy_entries(r, str(policy_id))
        return self._enforcers.get(raw, auth.subjects, namespace_of(event.thing_id), self._iso_now)

    def partial_thing(
        self, event: ThingEvent, auth: AuthContext, *, extra_fields: FieldSelector | None = None
    ) -> dict[str, Json] | None:
        """What ``auth`` may see of ``event``: Ditto's partial thing (``thingId`` and the changed part at its
        place), reduced to the leaves the subscriber may READ now (ditto.md §6.1). ``None``: nothing.

        READ is checked against the *current* entries of the event's policy, at delivery time, so a
        subscriber whose access was revoked stops receiving at once (replayed events included).
        ``extra_fields`` (Ditto's ``extraFields`` enrichment) are taken from the thing as it is now,
        filtered by READ too, and merged under the event's data.
        """
        enforcer = self._event_enforcer(event, auth)
        if enforcer is None or not enforcer.partial("thing", event.path, "READ"):
            return None
        view: dict[str, Json] = {"thingId": event.thing_id}
        if event.action != "deleted":
            readable = enforcer.readable_view(_partial_thing(event))
            if not isinstance(readable, dict) or not readable:
                return None  # ditto.md §6.1: events whose projection is empty are dropped
            view.update(readable)
        if extra_fields is not None:
            with self._store.read() as r:
                current = get_thing(r, event.thing_id)
                current_enforcer = None if current is None else self._access(r, current, auth)
            if (
                current is not None
                and current_enforcer is not None
                and current_enforcer.partial("thing", (), "READ")
            ):
                extra = self._select(self._readable(current_enforcer, current), current, extra_fields, None)
                view = _deep_merge(extra, view)
        return view

    def _publish(self, outcome: tuple[Written, ThingEvent]) -> None:
        self._bus.publish_nowait(outcome[1])

    def _create(
        self,
        w: WriteTxn,
        auth: AuthContext,
        thing_id: str,
        public: dict[str, Json],
        now: str,
        initial_policy: Json | None,
        copy_policy_from: str | None,
    ) -> tuple[Written, ThingEvent]:
        """Create the thing and, per ditto.md §1.6, its policy."""
        public = dict(public)
        public["policyId"] = self._policy_on_create(
            w, auth, thing_id, public, now, initial_policy, copy_policy_from
        )
        # ditto.md §1.6: whatever the policy, its creator must end up with WRITE on thing:/.
        enforcer = self._enforcers.get(
            get_policy_entries(w, str(public["policyId"])), auth.subjects, namespace_of(thing_id), now
        )
        if enforcer is None or not enforcer.unrestricted("thing", (), "WRITE"):
            raise not_modifiable(thing_id, ())
        tomb = w.get("kv", _TOMBSTONES + thing_id.encode())
        revision = 1 if tomb is None else int(tomb) + 1
        stored: dict[str, Json] = {
            **{k: public[k] for k in resources.THING_KEYS if k in public},
            "_revision": revision,
            "_created": now,
            "_modified": now,
        }
        self._check_size(stored)
        put_thing(w, stored, previous=None)
        if tomb is not None:
            w.delete("kv", _TOMBSTONES + thing_id.encode())
        value = resources.public_view(stored)
        event = ThingEvent("created", thing_id, (), value, revision, now, stored, auth.correlation_id)
        return Written(201, thing_id, revision, thing_etag(revision), value), event

    def _policy_on_create(
        self,
        w: WriteTxn,
        auth: AuthContext,
        thing_id: str,
        public: dict[str, Json],
        now: str,
        initial_policy: Json | None,
        copy_policy_from: str | None,
    ) -> str:
        if initial_policy is not None and copy_policy_from is not None:
            raise InvalidInput(
                "The Thing was specified with both an inline policy ('_policy') and a policy to copy from"
                " ('_copyPolicyFrom').",
                error_code="things:policy.conflicting",
            )
        body_policy_id = public.get("policyId")
        if copy_policy_from is not None:
            source_id = self._resolve_copy_source(w, copy_policy_from)
            source = get_policy(w, source_id)
            if source is None or not self._may_read_policy(w, source_id, auth, now):
                raise InvalidInput(
                    f"The Policy with ID '{source_id}' to copy from could not be found.",
                    error_code="things:thing.notcreatable",
                )
            policy_id = str(body_policy_id) if body_policy_id else thing_id
            entries = source.get("entries", {})
            self._store_new_policy(w, policy_id, entries, now, thing_id)
            return policy_id
        if initial_policy is not None:
            if not isinstance(initial_policy, dict):
                raise InvalidInput(
                    "The inline policy must be a JSON object.", error_code="things:policy.invalid"
                )
            policy_id = str(body_policy_id or initial_policy.get("policyId") or thing_id)
            try:
                parsed = parse_policy({**initial_policy, "policyId": policy_id}, policy_id=policy_id)
                check_policy_manageable(parsed, now=now)
            except (InvalidInput, PolicyDenied) as err:
                raise InvalidInput(
                    f"The inline policy is invalid: {err.message}",
                    description="It must be a valid policy with at least one subject with WRITE permission on"
                    " 'policy:/'.",
                    error_code="things:policy.invalid",
                ) from None
            entries = parsed["entries"]
            self._store_new_policy(w, policy_id, entries, now, thing_id)
            return policy_id
        if body_policy_id is not None:
            policy_id = parse_policy_id(str(body_policy_id))
            if get_policy(w, policy_id) is None or not self._may_read_policy(w, policy_id, auth, now):
                raise InvalidInput(
                    f"The Thing with ID '{thing_id}' could not be created as the Policy with ID '{policy_id}' is"
                    " not existing.",
                    description="Check if the ID of the Policy you created the Thing with is correct and that the"
                    " Policy is existing.",
                    error_code="things:thing.notcreatable",
                )
            return policy_id
        entries = default_policy(thing_id, auth.originator)["entries"]
        self._store_new_policy(w, thing_id, entries, now, thing_id)
        return thing_id

    @staticmethod
    def _resolve_copy_source(w: ReadTxn, source: str) -> str:
        ref = source.strip()
        if ref.startswith("{{") and ref.endswith("}}"):
            inner = ref[2:-2].strip()
            prefix, _, rest = inner.partition(":")
            if (
                prefix.strip() != "ref"
                or not rest.strip().startswith("things/")
                or not rest.strip().endswith("/policyId")
            ):
                raise InvalidInput(
                    f"The placeholder '{source}' in '_copyPolicyFrom' is not supported.",
                    error_code="things:policy.invalid",
                )
            referenced = parse_thing_id(rest.strip()[len("things/") : -len("/policyId")])
            other = get_thing(w, referenced)
            if other is None:
                raise resources.not_found(referenced, ())
            return str(other["policyId"])
        return parse_policy_id(ref)

    @staticmethod
    def _store_new_policy(w: WriteTxn, policy_id: str, entries: Json, now: str, thing_id: str) -> None:
        parse_policy_id(policy_id)
        if get_policy(w, policy_id) is not None:
            raise InvalidInput(
                f"The Thing with ID '{thing_id}' could not be created because a Policy with ID '{policy_id}'"
                " already exists.",
                description="Create the Thing with an explicit 'policyId' or with a new inline '_policy'.",
                error_code="things:thing.notcreatable",
            )
        put_policy(
            w,
            {"policyId": policy_id, "entries": entries, "_revision": 1, "_created": now, "_modified": now},
        )

    @staticmethod
    def _check_policy_exists(w: ReadTxn, public: dict[str, Json]) -> None:
        policy_id = public.get("policyId")
        if policy_id is not None and get_policy(w, str(policy_id)) is None:
            raise NotFound(
                f"The Policy with ID '{policy_id}' could not be found or requester had insufficient permissions to"
                " access it.",
                description="Check if the ID of the Policy is correct and that the Policy is existing.",
                error_code="policies:policy.notfound",
            )

    def _commit(
        self,
        w: WriteTxn,
        stored: dict[str, Json],
        public: dict[str, Json],
        now: str,
        action: Any,
        path: Pointer,
        value: Json,
        auth: AuthContext,
        *,
        status: int,
        etag: bool = True,
    ) -> tuple[Written, ThingEvent]:
        revision = int(stored["_revision"]) + 1  # type: ignore[arg-type]
        new: dict[str, Json] = {
            **{k: public[k] for k in resources.THING_KEYS if k in public},
            "_revision": revision,
            "_created": stored.get("_created", now),
            "_modified": now,
        }
        self._check_size(new)
        put_thing(w, new, previous=stored)
        tag = None
        created_value: Json | None = None
        if etag:
            tag = thing_etag(revision) if not path else value_etag(get_at(public, path))  # type: ignore[arg-type]
        if status == 201:
            created_value = public if not path else get_at(public, path)  # type: ignore[assignment]
        event = ThingEvent(action, str(new["thingId"]), path, value, revision, now, new, auth.correlation_id)
        return Written(status, str(new["thingId"]), revision, tag, created_value), event  # type: ignore[arg-type]

    def _checked_target(
        self,
        pre: Preconditions,
        stored: dict[str, Json],
        enforcer: Enforcer,
        path: Pointer,
        method: str,
        now: str,
    ) -> tuple[dict[str, Json], Json | Missing]:
        """Ditto's order for a write on an existing thing: ``condition``, then ``If-Match`` /
        ``If-None-Match`` on the addressed resource. Returns the public thing and the value at ``path``."""
        self._check_condition(pre, stored, now, enforcer)
        public = resources.public_view(stored)
        current = get_at(public, path)
        self._check_preconditions(pre, method, self._etag(stored, path, current))
        return public, current

    @staticmethod
    def _check_size(thing: dict[str, Json]) -> None:
        size = len(orjson.dumps(thing))
        if size > MAX_THING_BYTES:
            raise PayloadTooLarge(
                f"The size of '{size / 1024:.0f}' kB exceeds the maximal allowed Thing size of '100' kB.",
                description="Reduce the Thing size in the bounds of the specified limit.",
                error_code="things:thing.toolarge",
            )

    @staticmethod
    def _etag(stored: dict[str, Json], path: Pointer, current: Json | Any) -> str | None:
        if not path:
            return thing_etag(int(stored["_revision"]))  # type: ignore[arg-type]
        return None if current is MISSING else value_etag(current)

    @staticmethod
    def _comparable(value: Json | Any, path: Pointer) -> Json | Any:
        # At the root Ditto compares without thingId, policyId and hidden/special members.
        if path or not isinstance(value, dict):
            return value
        return {k: v for k, v in value.items() if k not in ("thingId", "policyId") and not k.startswith("_")}

    @staticmethod
    def _check_preconditions(
        pre: Preconditions, method: str, current_etag: str | None, *, policies: bool = False
    ) -> None:
        if pre.if_match is None and pre.if_none_match is None:
            return
        try:
            check_preconditions(
                method=method,
                current_etag=current_etag,
                if_match=pre.if_match,
                if_none_match=pre.if_none_match,
                resource_kind="Policy" if policies else "Thing",
                code_prefix="policies" if policies else "things",
            )
        except (PreconditionFailed, NotModified) as err:
            if current_etag is not None:
                err.headers["etag"] = current_etag
            raise

    @staticmethod
    def _condition_holds(
        condition: str, stored: dict[str, Json], now: str, enforcer: Enforcer, *, what: str = "condition"
    ) -> bool:
        try:
            node = rql.parse_filter(condition)
        except RqlSyntaxError as err:
            raise InvalidInput(
                f"The specified {what} '{condition}' is invalid: {err.message}",
                description="Check the condition's RQL syntax (see Ditto's RQL documentation).",
                error_code="things:condition.invalid",
            ) from None
        if not enforcer.may_read_fields(rql.referenced_fields(node)):
            raise condition_unreadable(what)
        return rql.evaluate(node, _with_hidden(stored), now=now)

    @classmethod
    def _check_condition(
        cls, pre: Preconditions, stored: dict[str, Json], now: str, enforcer: Enforcer
    ) -> None:
        if pre.condition is None:
            return
        if not cls._condition_holds(pre.condition, stored, now, enforcer):
            raise PreconditionFailed(
                "The specified condition does not match the state of the requested Thing.",
                description="Check if the condition is correct.",
                error_code="things:condition.failed",
            )

    @staticmethod
    def _parse_filter(text: str | None) -> rql.Node | None:
        if text is None or not text.strip():
            return None
        return rql.parse_filter(text)

    @staticmethod
    def _namespaces(namespaces: tuple[str, ...] | None) -> frozenset[str] | None:
        if namespaces is None:
            return None
        for namespace in namespaces:
            if not is_valid_namespace(namespace):
                raise InvalidInput(
                    f"The namespace '{namespace}' is not valid.",
                    error_code="thing-search:search.namespaces.invalid",
                )
        return frozenset(namespaces)

    # ------------------------------------------------------------ enforcement

    def _access(self, r: ReadTxn, stored: dict[str, Json], auth: AuthContext) -> Enforcer | None:
        """The caller's enforcer for ``stored`` (``None``: its policy is gone, so nobody may access it)."""
        thing_id = str(stored["thingId"])
        raw = get_policy_entries(r, str(stored.get("policyId", "")))
        if raw is None:
            return None
        return self._enforcers.get(raw, auth.subjects, namespace_of(thing_id), self._iso_now)

    def _writable(self, w: ReadTxn, stored: dict[str, Json], auth: AuthContext, thing_id: str) -> Enforcer:
        """The enforcer for a write; a caller who may neither read nor write the thing learns nothing (404)."""
        enforcer = self._access(w, stored, auth)
        if enforcer is None or not (
            enforcer.partial("thing", (), "READ") or enforcer.partial("thing", (), "WRITE")
        ):
            raise resources.not_found(thing_id, ())
        return enforcer

    def _may_read_policy(self, r: ReadTxn, policy_id: str, auth: AuthContext, now: str) -> bool:
        enforcer = self._enforcers.get(
            get_policy_entries(r, policy_id), auth.subjects, namespace_of(policy_id), now
        )
        return enforcer is not None and enforcer.partial("policy", (), "READ")

    @staticmethod
    def _readable(
        enforcer: Enforcer, stored: dict[str, Json], public: dict[str, Json] | None = None
    ) -> dict[str, Json]:
        """The public thing filtered to what the caller may read; ``thingId`` is always kept."""
        if public is None:
            public = resources.public_view(stored)
        view = enforcer.readable_view(public)
        if view is public:
            return public
        out: dict[str, Json] = {"thingId": stored["thingId"]}
        if isinstance(view, dict):
            out.update(view)
        return out

    def _visible(self, r: ReadTxn, auth: AuthContext) -> Callable[[dict[str, Json]], dict[str, Json] | None]:
        """The search hook: the caller's view of a thing (hidden fields kept), or ``None`` to hide it.

        The search engine evaluates the filter and the sort on this view, so a search cannot probe fields
        the caller may not read.
        """

        def visible(thing: dict[str, Json]) -> dict[str, Json] | None:
            enforcer = self._access(r, thing, auth)
            if enforcer is None or not enforcer.partial("thing", (), "READ"):
                return None
            if enforcer.unrestricted("thing", (), "READ"):
                return thing  # everything is readable: no view to build
            view = self._readable(enforcer, thing)
            return {**view, **{k: v for k, v in thing.items() if k.startswith("_")}}

        return visible

    @staticmethod
    def _policy_for_fields(
        r: ReadTxn, stored: dict[str, Json] | None, fields: FieldSelector | None, enforcer: Enforcer | None
    ) -> Json:
        """The thing's policy for a ``_policy`` field selection, if the caller may read it."""
        if stored is None or fields is None or "_policy" not in fields.text or "policyId" not in stored:
            return None
        if enforcer is None or not enforcer.partial("policy", (), "READ"):
            return None
        policy = get_policy(r, str(stored["policyId"]))
        if policy is None:
            return None
        readable = enforcer.readable_view(
            {k: v for k, v in policy.items() if not k.startswith("_")}, resource_type="policy"
        )
        return None if readable is MISSING else readable

    @staticmethod
    def _select(
        view: dict[str, Json], stored: dict[str, Json], fields: FieldSelector | None, policy: Json
    ) -> dict[str, Json]:
        """Apply ``fields`` to the caller's view, with the hidden fields (and ``_policy``) selectable."""
        if fields is None:
            return view
        full = {**view, **{k: v for k, v in stored.items() if k.startswith("_")}}
        full["_namespace"] = namespace_of(str(stored["thingId"]))
        if policy is not None:
            full["_policy"] = policy
        return apply_fields(full, fields)


def _policy_not_found(policy_id: str) -> NotFound:
    return NotFound(
        f"The Policy with ID '{policy_id}' could not be found or requester had insufficient permissions to"
        " access it.",
        description="Check if the ID of your requested Policy was correct and you have sufficient permissions.",
        error_code="policies:policy.notfound",
    )


def _policy_not_modifiable(policy_id: str) -> PolicyDenied:
    return PolicyDenied(
        f"The Policy with ID '{policy_id}' could not be modified as the requester had insufficient permissions"
        " to modify it.",
        description="Check if the ID of the Policy was correct and you have sufficient permissions.",
        error_code="policies:policy.notmodifiable",
    )
