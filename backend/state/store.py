"""StateStore: the versioned read and write path of session state in Redis.

Why it looks like this:

* One write is one round trip. `write_state.lua` checks the version the caller read, stores the
  document with its sliding TTL and appends the event to the session's stream atomically.
  On a single Redis node the same script also touches the user's session index and the dirty
  mark (which drives snapshotting to PostgreSQL). On a cluster those live in other slots, so
  they ride in the same pipeline instead; either way they can always be rebuilt from the
  sessions themselves (`rebuild_indexes`).
* Optimistic concurrency: a stale write raises `VersionConflict`; `update()` re-reads and
  retries with jittered backoff, bounded.
* The state hash keeps flat copies of a few fields (status, kind, counts...) next to the JSON
  document so listings and stats never parse whole documents.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any, Literal, TypeVar, cast, overload

import msgspec
from redis import exceptions as redis_errors

from backend.core import metrics
from backend.core.autopipeline import AutoPipeline
from backend.core.config import Settings
from backend.core.errors import InvalidState, SessionNotFound, VersionConflict
from backend.core.redis import RedisService, translate_errors
from backend.core.tracing import span
from backend.state.decoded import DecodedConversations
from backend.state.keys import Keys
from backend.state.notify import NOTIFY_INLINE_BYTES, NOTIFY_MAXLEN, StreamNotifier
from backend.state.owed import owes_reply
from backend.state.queues import DirtySet, DueSet
from backend.state.replication import ReplicaWait
from backend.state.schemas import (
    ConversationState,
    Event,
    OrchestrationState,
    SessionPage,
    StateDocument,
    decode_state,
    encode_state,
    utcnow,
)
from backend.state.writes import (
    AlreadyWritten,
    Companion,
    CompanionConflict,
    IdempotentWrite,
    OverLimit,
    RateLimit,
    WriteResult,
)

Kind = Literal["conversation", "orchestration"]
S = TypeVar("S", ConversationState, OrchestrationState)

# Hooks the durability layer plugs in (see HybridConversationService): a restorer that brings
# a session missing from Redis back from PostgreSQL or the cold archive (it must call
# `restore_state` and return what is now in Redis, or None), and a callback that runs before a
# session's hot keys are deleted (to snapshot what Redis holds first).
Restorer = Callable[[Kind, str], Awaitable["StateDocument | None"]]
BeforeDelete = Callable[[str], Awaitable[None]]
# Lists a user's sessions across tiers (tenant, user, offset, limit): Redis's user index only
# knows sessions touched since they were last loaded into Redis.
SessionLister = Callable[[str, str, int, int], Awaitable[SessionPage]]


def _lua(name: str) -> str:
    return files("backend.state").joinpath("lua", name).read_text()


class StateStore:
    """Reads, versioned writes and read-modify-write of one session's state documents."""

    def __init__(self, redis: RedisService, settings: Settings, *, prefix: str | None = None):
        self.redis = redis
        self.settings = settings
        self.keys = Keys(prefix or settings.key_prefix)
        self.restorer: Restorer | None = None
        self.before_delete: BeforeDelete | None = None
        self.session_lister: SessionLister | None = None
        client = redis.client
        self._autopipe = AutoPipeline(client)
        self._single_node = not redis.is_cluster
        self.notifier = StreamNotifier(self.keys, settings.stream_partitions, self._single_node)
        self._decoded = DecodedConversations(settings.state_cache_sessions)
        self._write_script = client.register_script(_lua("write_state.lua"))
        self._event_script = client.register_script(_lua("append_event.lua"))
        self._index_script = client.register_script(_lua("touch_index.lua"))
        self._durable_script = client.register_script(_lua("mark_durable.lua"))
        self.due = DueSet(redis, self.keys, settings)
        self._replicas = ReplicaWait(client, settings, self._autopipe)
        self.dirty = DirtySet(redis, self.keys)

    @property
    def counts_limits_in_writes(self) -> bool:
        """Whether a write can count rate-limit hits in its own script (`RateLimit`): on a
        single node only, as the counters live in other slots on a cluster."""
        return self._single_node

    # ------------------------------------------------------------------ reads

    async def get_conversation_state(self, session_id: str) -> ConversationState | None:
        """The session's conversation; read-through to the restorer when Redis lost it."""
        state = await self._get(ConversationState, self.keys.conversation(session_id))
        if state is None and self.restorer is not None:
            restored = await self.restorer("conversation", session_id)
            assert restored is None or isinstance(restored, ConversationState)
            return restored
        return state

    async def get_orchestration_state(
        self, session_id: str, *, restore: bool = True
    ) -> OrchestrationState | None:
        """The session's orchestration; read-through unless `restore=False` (see `update`)."""
        state = await self._get(OrchestrationState, self.keys.orchestration(session_id))
        if state is None and restore and self.restorer is not None:
            restored = await self.restorer("orchestration", session_id)
            assert restored is None or isinstance(restored, OrchestrationState)
            return restored
        return state

    async def get_hot_conversation_state(self, session_id: str) -> ConversationState | None:
        """Redis only, never the restorer (for the snapshot worker and for tests)."""
        return await self._get(ConversationState, self.keys.conversation(session_id))

    async def _get(self, model: type[S], key: str) -> S | None:
        raw, durable_seq = await self._autopipe.call(("HMGET", key, "doc", "durable_seq"), raw=True)
        if raw is None:
            return None
        if model is not ConversationState:
            return decode_state(model, raw)
        conversation = self._decoded.get(key, raw)
        if conversation is None:
            conversation = decode_state(ConversationState, raw)
            self._decoded.decoded(key, raw, conversation)
        if durable_seq is not None:
            conversation.set_durable_seq(int(durable_seq))
        return cast(S, conversation)

    async def run_command(self, command: tuple[Any, ...]) -> Any:
        """One read-only command through the auto-pipeline (round trips and connections shared
        with every concurrent caller); an error reply is raised."""
        return await self._autopipe.call(command)

    async def get_version(self, session_id: str, kind: Kind = "conversation") -> int:
        """The stored version (0 when absent): a cheap read that does not parse the document."""
        with translate_errors():
            raw = await self.redis.client.hget(self._state_key(kind, session_id), "version")
        return int(raw or 0)

    # ----------------------------------------------------------------- writes

    async def save_conversation_state(
        self,
        state: ConversationState,
        *,
        expected_version: int | None = None,
        event: Event | None = None,
    ) -> ConversationState:
        """Write `state` if the stored version is still the one it was read at.

        Returns the state with its new version; raises `VersionConflict` when stale.
        """
        return await self._save("conversation", state, expected_version, event)

    async def save_orchestration_state(
        self,
        state: OrchestrationState,
        *,
        expected_version: int | None = None,
        event: Event | None = None,
    ) -> OrchestrationState:
        return await self._save("orchestration", state, expected_version, event)

    async def _save(
        self, kind: Kind, state: S, expected_version: int | None, event: Event | None
    ) -> S:
        return (await self._save_returning_event(kind, state, expected_version, event))[0]

    async def _save_returning_event(
        self,
        kind: Kind,
        state: S,
        expected_version: int | None,
        event: Event | None,
        idempotency: IdempotentWrite | None = None,
        leading: tuple[Event, ...] = (),
        limits: tuple[RateLimit, ...] = (),
        release: str | None = None,
        companion: Companion | None = None,
        index: bool = True,
    ) -> tuple[S, str | None]:
        expected = state.version if expected_version is None else expected_version
        new = state.with_version(expected + 1)
        with span("state.write", kind=kind, session_id=new.session_id):
            result = await self._write(
                kind,
                new,
                mode="cas",
                version=expected,
                event=event,
                idempotency=idempotency,
                leading=leading,
                limits=limits,
                release=release,
                companion=companion,
                index=index,
            )
        if result is None:
            metrics.state_conflict()
            actual = await self.get_version(state.session_id, kind)
            raise VersionConflict(
                f"{kind} {state.session_id} changed since it was read",
                expected=expected,
                actual=actual,
            )
        metrics.state_written(kind)
        return new, result.event_id

    async def restore_state(
        self,
        kind: Kind,
        state: StateDocument,
        event: Event | None = None,
        *,
        mark_dirty: bool = False,
    ) -> bool:
        """Put back a state lost from Redis with its stored version.

        Writes only when Redis holds no state or an older version: a restore never brings back
        an older version over a newer one. Returns whether it wrote. `mark_dirty` hands the
        session to snapshotting (for state PostgreSQL does not hold, e.g. migrated state).
        """
        if state.version < 1:
            raise InvalidState("a restored state needs a version of at least 1")
        with span("state.restore", kind=kind, session_id=state.session_id):
            result = await self._write(
                kind,
                state,
                mode="restore",
                version=state.version,
                event=event,
                mark_dirty=mark_dirty,
            )
        return result is not None

    async def _write(
        self,
        kind: Kind,
        state: StateDocument,
        *,
        mode: str,
        version: int,
        event: Event | None,
        mark_dirty: bool = True,
        idempotency: IdempotentWrite | None = None,
        leading: tuple[Event, ...] = (),
        limits: tuple[RateLimit, ...] = (),
        release: str | None = None,
        companion: Companion | None = None,
        index: bool = True,
    ) -> WriteResult | None:
        """One run of write_state.lua. None on a version conflict; `AlreadyWritten` when
        `idempotency` names a key this session already used. `leading`: events that change no
        state, appended just before `event` by the same script (a reply's last deltas).
        `index=False`: the user's session index is left alone (see `update_returning_event`)."""
        sid = state.session_id
        own_ttl, other_ttl = self._ttls(kind)
        doc = encode_state(state)
        updated_us = int(state.updated_at.timestamp() * 1_000_000)
        meta = _meta(state, updated_us)
        if isinstance(state, ConversationState):
            meta |= {
                "kind": state.kind,
                "title": state.title,
                "message_count": state.message_count,
                # Lets an open event stream check cheaply that its session's reply is coming.
                "owes_reply": owes_reply(state),
            }
        conversation, orchestration, events, idem, idem_old = self.keys.state_keys(sid)
        if kind == "conversation":
            keys = [conversation, orchestration, events, idem, idem_old]
        else:
            keys = [orchestration, conversation, events, idem, idem_old]
        args: list[Any] = [
            mode,
            version,
            own_ttl,
            other_ttl,
            self.settings.stream_maxlen,
            event.type if event else "",
            _json(event.data) if event else "",
            doc,
            _json(meta),
        ]
        index_key = self.keys.user_index(state.tenant_id, state.user_id)
        ttl = self.settings.conversation_ttl
        index_score = updated_us if kind == "conversation" and index else ""
        now = time.time()
        tail: list[Any] = [now, min(own_ttl, other_ttl) * TTL_REFRESH_FRACTION, len(leading)]
        for extra in leading:
            tail += [extra.type, _json(extra.data)]
        if limits and not self._single_node:
            raise ValueError("rate limits ride in the write script on a single node only")
        tail.append(len(limits))
        for limit in limits:
            tail += [limit.limit, limit.window_ms]
        tail.append(release or "")
        # On a single node the script notifies the session's stream partition (its key after
        # the rate-limit counters); on a cluster the notification follows the script. The
        # conversation hash keeps the stream's last id, which the notification names.
        tail.append(NOTIFY_MAXLEN if self._single_node else "")
        tail += [NOTIFY_INLINE_BYTES, "1" if kind == "conversation" else "2"]
        if companion is not None:
            if kind != "conversation":
                raise ValueError("only a conversation write carries a companion")
            other = companion.state.with_version(companion.state.version + 1)
            other_us = int(other.updated_at.timestamp() * 1_000_000)
            tail += [companion.state.version, encode_state(other), _json(_meta(other, other_us))]
            event_of = companion.event
            tail += [event_of.type, _json(event_of.data)] if event_of else ["", ""]
        dirty_score = now if mark_dirty else ""
        due_score = self.due.score(state, now)
        if self._single_node:
            keys += [index_key, self.keys.dirty(), self.keys.replies_due()]
            keys += [limit.key for limit in limits]
            keys.append(self.notifier.key(sid))
            if release:
                keys.append(self.keys.lease(sid))
            args += [sid, index_score, ttl, dirty_score, *self._idempotency_args(idempotency)]
            args += [due_score, *tail]
            reply, acked = await self._send_write([_evalsha(self._write_script.sha, keys, args)])
        else:
            # Pipeline, not MULTI: on a cluster the index and dirty set sit in other slots. If
            # the versioned write loses, the extra ZADDs are harmless (the session exists and is
            # at least as new as this score); if we crash after the script, both are rebuildable.
            # The due score still goes in: the script records `owes` in the hash (and releases
            # a lease by it) but touches no due set, which it has no key of here.
            args += [sid, "", ttl, "", *self._idempotency_args(idempotency), due_score, *tail]
            if release:
                keys.append(self.keys.lease(sid))
            commands = [_evalsha(self._write_script.sha, keys, args)]
            if index_score != "":
                prune = int(mode == "restore" or version == 0)  # a new session, as in the script
                commands.append(
                    _evalsha(self._index_script.sha, [index_key], [sid, index_score, ttl, prune])
                )
            if dirty_score != "":
                commands.append(("ZADD", self.keys.dirty(), "NX", dirty_score, sid))
            # Adding a due entry rides along even if the versioned write loses (a spare entry
            # costs the sweep one look); removing one waits until the write has won, since a
            # lost write's state is not the session's.
            if due_score not in ("", "-"):
                commands.append(("ZADD", self.keys.replies_due(), "LT", due_score, sid))
            reply, acked = await self._send_write(commands)
            if reply[0] == 1 and reply[3]:  # the notification's fields: events were appended
                await self.notifier.send(self._pipeline, sid, reply[3])
            if reply[0] == 1 and due_score == "-":
                self._replicas.require(acked, sid)  # else the due entry must stay (see owed.py)
                await self.due.settle(sid)
        ok, new_version, *rest = reply
        if ok == 4:
            raise CompanionConflict(f"orchestration {sid} changed since it was read")
        if ok == 3:
            raise OverLimit(int(new_version) - 1, int(rest[0]))
        if ok == 2:
            await self._confirm_replicated(sid)
            raise AlreadyWritten(json.loads(new_version))
        if not ok:
            return None
        self._replicas.require(acked, sid)
        if isinstance(state, ConversationState):
            self._decoded.written(keys[0], doc, state)
        return WriteResult(version=int(new_version), event_id=rest[0] or None)

    async def _send_write(self, commands: list[tuple[Any, ...]]) -> tuple[Any, int | None]:
        """The write's commands (the session's script first) in one round trip: the script's
        reply and, with STATE_WRITE_REPLICAS, how many replicas WAIT counted (replication.py)."""
        if self._replicas.enabled:
            send = self._replicas.sender(commands[0][3])  # the script's first key
            return (await self._pipeline(commands, send=send))[0], send.acked
        if len(commands) == 1:
            return await self._run_script(commands[0]), None
        return (await self._pipeline(commands))[0], None

    async def _confirm_replicated(self, session_id: str) -> None:
        """Before answering from a write this session already holds (see replication.py)."""
        key = self.keys.conversation(session_id)
        await self._replicas.confirm(key, self.settings.conversation_ttl, session_id)

    def _idempotency_args(self, idempotency: IdempotentWrite | None) -> tuple[Any, ...]:
        if idempotency is None:
            return _NO_IDEMPOTENCY
        return (
            idempotency.key,
            _json(idempotency.record),
            self.settings.idempotency_keys_per_session,
            self.settings.conversation_ttl,
        )

    async def _run_script(self, command: tuple[Any, ...]) -> Any:
        """One EVALSHA; on NOSCRIPT (a restarted Redis lost its script cache: the command did
        not run) load the scripts and send it again."""
        try:
            return await self._autopipe.call(command)
        except redis_errors.NoScriptError:
            await self.load_scripts()
            return await self._autopipe.call(command)

    async def _pipeline(
        self,
        commands: list[tuple[Any, ...]],
        *,
        send: Callable[[list[tuple[Any, ...]]], Awaitable[list[Any]]] | None = None,
    ) -> list[Any]:
        """Run raw commands in one non-transactional pipeline (one round trip, shared with
        whatever other callers are in flight: see AutoPipeline; `send` replaces it).

        A command refused with NOSCRIPT (a restarted or new Redis node lost the script cache)
        did not run: load the scripts and replay just those commands, never the others.
        """
        results: list[Any] = [None] * len(commands)
        pending = list(range(len(commands)))
        for attempt in (1, 2):
            answers = await (send or self._autopipe.execute)([commands[i] for i in pending])
            for i, answer in zip(pending, answers, strict=True):
                results[i] = answer
            pending = [i for i in pending if isinstance(results[i], redis_errors.NoScriptError)]
            if not pending:
                break
            if attempt == 1:
                await self.load_scripts()
        for r in results:
            if isinstance(r, Exception):
                with translate_errors():
                    raise r
        return results

    async def load_scripts(self) -> None:
        """Load the Lua scripts on every node (called at start-up and after NOSCRIPT)."""
        with translate_errors():
            for script in (
                self._write_script,
                self._event_script,
                self._index_script,
                self._durable_script,
            ):
                await self.redis.client.script_load(script.script)

    async def append_event(
        self, session_id: str, event: Event, *, version: int | None = None
    ) -> str | None:
        """Append an event that changes no state (a streamed delta, a ping of progress).

        Returns the stream entry id, or None when the session's state is gone.
        """
        keys = [self.keys.conversation(session_id), self.keys.events(session_id)]
        ttl = max(self.settings.conversation_ttl, self.settings.orchestration_ttl)
        args: list[str | int | bytes] = [
            ttl,
            self.settings.stream_maxlen,
            event.type,
            _json(event.data),
            "" if version is None else version,
            session_id,
            NOTIFY_MAXLEN if self._single_node else "",
            NOTIFY_INLINE_BYTES,
        ]
        if self._single_node:
            keys.append(self.notifier.key(session_id))
        with translate_errors():
            try:
                result = await self._event_script(keys=keys, args=args)
            except redis_errors.NoScriptError:
                await self.load_scripts()
                result = await self._event_script(keys=keys, args=args)
        if not result:
            return None
        if not self._single_node:
            await self.notifier.send(self._pipeline, session_id, result[1])
        return str(result[0])

    async def notify_gone(self, session_id: str) -> None:
        """Cluster only: after a script deleted the session's keys (see `notifier.in_script`)."""
        await self.notifier.send(self._pipeline, session_id, gone=True)

    # ------------------------------------------------------------ read-modify-write

    @overload
    async def update(
        self,
        session_id: str,
        mutate: Callable[[ConversationState], Event | Awaitable[Event | None] | None],
        *,
        kind: Literal["conversation"] = ...,
        create: Callable[[], ConversationState] | None = ...,
        restore: bool = ...,
    ) -> ConversationState: ...

    @overload
    async def update(
        self,
        session_id: str,
        mutate: Callable[[OrchestrationState], Event | Awaitable[Event | None] | None],
        *,
        kind: Literal["orchestration"],
        create: Callable[[], OrchestrationState] | None = ...,
        restore: bool = ...,
    ) -> OrchestrationState: ...

    async def update(
        self,
        session_id: str,
        mutate: Callable[[Any], Any],
        *,
        kind: Kind = "conversation",
        create: Callable[[], Any] | None = None,
        restore: bool = True,
    ) -> Any:
        """Read, apply `mutate`, write; on a conflict re-read and retry with jittered backoff.

        `mutate` changes the state in place and may return the Event to append with the write
        (it must be free of side effects: it runs again on every retry). `create` builds the
        initial state when the session does not exist; without it a missing session raises
        `SessionNotFound`. After `STATE_WRITE_MAX_ATTEMPTS` conflicts, `VersionConflict` is raised.
        """
        state, _ = await self.update_returning_event(
            session_id, mutate, kind=kind, create=create, restore=restore
        )
        return state

    async def update_returning_event(
        self,
        session_id: str,
        mutate: Callable[[Any], Any],
        *,
        kind: Kind = "conversation",
        create: Callable[[], Any] | None = None,
        current: StateDocument | None = None,
        idempotency: IdempotentWrite | None = None,
        restore: bool = True,
        leading: tuple[Event, ...] = (),
        limits: tuple[RateLimit, ...] = (),
        release: str | None = None,
        companion: Companion | None = None,
        index: bool = True,
    ) -> tuple[Any, str | None]:
        """`update()`, also returning the stream id of the event written with the state.

        SSE routes need that id: a client resumes after it (Last-Event-ID). `current` is a
        state the caller has just read (and hands over: it is changed in place): the first
        attempt starts from it instead of reading again; a conflict re-reads as usual.
        `idempotency` tags the write (see `IdempotentWrite`): if its key was used already, no
        attempt writes and `AlreadyWritten` is raised.
        `restore=False` reads Redis only, never the restorer: for a state PostgreSQL cannot
        hold (a session it has no snapshot of), so the write works while PostgreSQL is down.
        `leading`: state-less events appended just before the write's own, in its script.
        `limits`: rate-limit counters the first attempt counts a hit on, in its script (single
        node only, see `counts_limits_in_writes`); past a limit it raises `OverLimit` and
        writes nothing. A retry after a conflict does not count again.
        `release`: a reply lease token; a write that leaves the conversation owing nothing
        releases the session's lease if that token holds it, in its script.
        `companion`: the orchestration, written by the same script, only by the first attempt
        and only from a `current` state (it was derived from that state); so it was written
        exactly when the returned version is `current.version + 1`. Raises
        `CompanionConflict` (nothing written) when the orchestration moved on meanwhile.
        `index=False` leaves the user's session index as it is: the reply runner's writes, so
        the index orders a user's sessions by their own last write (their last message), and
        a reply costs no ZADD per write (listings show `updated_at` from the state itself).
        """
        attempts = self.settings.state_write_max_attempts
        last: VersionConflict | None = None
        for attempt in range(attempts):
            if attempt == 0 and current is not None:
                state: Any = current
            elif kind == "conversation" and not restore:
                state = await self.get_hot_conversation_state(session_id)
            else:
                state = await (
                    self.get_conversation_state(session_id)
                    if kind == "conversation"
                    else self.get_orchestration_state(session_id, restore=restore)
                )
            if state is None:
                if create is None:
                    raise SessionNotFound(f"session {session_id} not found")
                state = create()
            state.updated_at = utcnow()
            event = mutate(state)
            if isinstance(event, Awaitable):
                event = await event
            try:
                return await self._save_returning_event(
                    kind,
                    state,
                    None,
                    event,
                    idempotency,
                    leading,
                    limits if attempt == 0 else (),
                    release,
                    companion if attempt == 0 and current is not None else None,
                    index,
                )
            except VersionConflict as exc:
                last = exc
                if attempt + 1 < attempts:
                    metrics.state_retry()
                # Exponential backoff with full jitter: writers that keep losing spread out
                # over a window that grows with their losses, so even 20 writers hammering
                # one session each get through well within the attempt budget.
                await asyncio.sleep(random.uniform(0, min(0.25, 0.002 * 2**attempt)))
        assert last is not None
        raise VersionConflict(
            f"{kind} {session_id}: gave up after {attempts} conflicting attempts",
            expected=last.expected,
            actual=last.actual,
        )

    async def session_metas(self, session_ids: list[str]) -> list[dict[str, Any] | None]:
        """The flat meta (plus version) of each session's conversation, None where it is gone."""
        if not session_ids:
            return []
        with translate_errors():
            pipe = self.redis.client.pipeline(transaction=False)
            for sid in session_ids:
                pipe.hmget(self.keys.conversation(sid), ["version", "meta"])
            rows = await pipe.execute()
        return [
            None if version is None else {**json.loads(meta), "version": int(version)}
            for version, meta in rows
        ]

    # ---------------------------------------------------------------- helpers

    def _state_key(self, kind: Kind, session_id: str) -> str:
        if kind == "conversation":
            return self.keys.conversation(session_id)
        return self.keys.orchestration(session_id)

    def _ttls(self, kind: Kind) -> tuple[int, int]:
        conv, orch = self.settings.conversation_ttl, self.settings.orchestration_ttl
        return (conv, orch) if kind == "conversation" else (orch, conv)


_json = msgspec.json.Encoder().encode
# A write refreshes the sliding TTLs of its session's keys only when the last refresh is older
# than this fraction of the TTL (see write_state.lua, ARGV[20]): four EXPIREs per write become
# four per session every ~14 minutes at a 24 h TTL, and a key still lives at least 99% of its
# TTL after the session's last write.
TTL_REFRESH_FRACTION = 0.01
_NO_IDEMPOTENCY = ("", "", "", "")  # write_state.lua's ARGV[14..17] for an untagged write


def _meta(state: StateDocument, updated_us: int) -> dict[str, Any]:
    """The flat fields stored next to a document (listings and stats never parse documents)."""
    return {
        "status": state.status,
        "updated_at": updated_us,
        "user_id": state.user_id,
        "tenant_id": state.tenant_id,
    }


def _evalsha(sha: str, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
    # A raw command: redis-py's ClusterPipeline blocks its `evalsha` method, yet routes a raw
    # EVALSHA by its keys' slot, which is all a single-slot script needs.
    return ("EVALSHA", sha, len(keys), *keys, *args)
