"""ReplyRunner: generates replies as background tasks owned by the app, never by a request.

A client that disconnects does not stop its reply: the reply is written to the session's
stream as it is generated, and the client picks it up later (events endpoint, Last-Event-ID).

One generator per session, across replicas, by a lease (`SessionLease`). Holding it, the
runner answers what the session owes (`replies.pending_seq`) until nothing is owed, releases
the lease, and checks once more: a message posted while the lease was held (its poster could
not take the lease) is seen by that last check, so no message waits for a reply that never
comes. Each reply is fenced by its `generation` marker in the versioned state: a generator
that lost its lease can no longer complete or fail a reply that someone else took over.

Recovery, so a session is never stuck: a replica that dies mid-reply leaves a marker and a
lease that expires. The sessions that owe a reply sit in a sorted set (`replies:due`, scored by
when to look at them). The state write that leaves a session owing a reply puts it there and
the write that stores its reply (or final error) takes it out, atomically (see
`StateStore._write`), so whatever fails in between, it stays due. Lease renewals
push its score forward; every replica sweeps the set, and every read of a session and every
open event stream check too. Whoever then takes the lease closes the dead reply with an
`error` event and generates it again.

Outages are not failures of the work: when Redis refuses or drops a write (full under
`noeviction`, restarting) or PostgreSQL is down (a restore), the job keeps its lease (its token
takes it back after a long outage) and retries that one step with bounded, jittered
exponential backoff until the store answers; nothing is counted against
`GENERATION_MAX_ATTEMPTS`. Only the generator's own failures and a replica's death count. For
two leases after an outage, a replica leaves alone a reply whose lease lapsed (its generator
may be taking it back), rather than closing it as a dead generator's.

Shutdown: stop taking new work, give running replies `SHUTDOWN_GRACE_SECONDS` to finish, then
close the rest with an `error` event (retrying) and mark them due now, for another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from backend.core import metrics
from backend.core.config import Settings
from backend.core.errors import SessionNotFound, StoreUnavailable
from backend.core.logging import bind_session
from backend.core.replica_stats import replica_stats
from backend.core.tracing import span
from backend.generators.base import CaseAnalysis, GenerationError, ReplyGenerator
from backend.replies import bookkeeping as replies
from backend.replies.assessment import Assessment, Assessor
from backend.replies.deltas import Deltas
from backend.replies.jobs import Job
from backend.replies.waits import OUTAGES, OutageWaits
from backend.state.schemas import ConversationState, Event
from backend.state.service import Companion, CompanionConflict, ConversationStateManager
from backend.streaming.lease import SessionLease
from backend.streaming.tasks import cancel_and_wait

log = logging.getLogger(__name__)

T = TypeVar("T")


class _NoWrite(Exception):
    """Raised from a `mutate` to leave the state as it is."""


class ReplyRunner:
    def __init__(
        self,
        manager: ConversationStateManager,
        lease: SessionLease,
        generator: ReplyGenerator,
        settings: Settings,
        assessor: Assessor,
    ) -> None:
        self.manager = manager
        self.lease = lease
        self.generator = generator
        self.settings = settings
        self.waits = OutageWaits(lease.ttl_ms)
        self.assessor = assessor
        self.accepting = True
        self._jobs: dict[str, Job] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="reply-sweeper")

    async def shutdown(self, grace: float) -> None:
        self.accepting = False
        if self._sweeper is not None:
            await cancel_and_wait([self._sweeper], deadline_s=5)
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        if not tasks:
            return
        log.info("waiting up to %.1fs for %d running replies", grace, len(tasks))
        _, late = await asyncio.wait(tasks, timeout=grace) if grace > 0 else (set(), set(tasks))
        if late:
            still = await cancel_and_wait(late, deadline_s=5)
            if still:
                log.warning("%d replies did not stop; their leases expire", len(still))

    @property
    def due_key(self) -> str:
        """The replies' due set (kept by the state manager's `due`)."""
        return self.manager.due.key

    @property
    def running(self) -> int:
        return len(self._jobs)

    # ------------------------------------------------------------------ entry

    def kick(self, session_id: str, written: ConversationState | None = None) -> None:
        """Make sure the session's owed reply gets generated (here, or by the lease holder).

        `written`: the state a write just stored (the job takes a copy and skips its read).
        """
        if not self.accepting:
            return
        job = self._jobs.get(session_id)
        if job is not None:
            job.again = True  # the running job looks again before it exits
            return
        job = Job(self.lease.new_token())
        job.fresh = written.clone() if written is not None else None
        self._jobs[session_id] = job
        job.task = asyncio.create_task(self._run(session_id, job), name=f"reply-{session_id}")

    async def ensure(self, conversation: ConversationState) -> None:
        """On any read of a session: restart a reply that nobody is generating."""
        sid = conversation.session_id
        if sid in self._jobs or not replies.owes_reply(conversation):
            return
        if not await self.lease.is_held(sid):
            self.kick(sid)

    async def recheck(self, session_ids: list[str]) -> None:
        """Sessions that owe a reply and have an open event stream here: start the reply of
        any that nobody generates (the stream's client is waiting for it)."""
        idle = [sid for sid in session_ids if sid not in self._jobs]
        if not idle or not self.accepting:
            return
        held = await self.lease.held(idle)
        for sid, holder in zip(idle, held, strict=True):
            if not holder:
                self.kick(sid)

    # ---------------------------------------------------------------- the job

    async def _run(self, session_id: str, job: Job) -> None:
        bind_session(session_id)  # this job's own task: its log lines name its session
        failures = 0
        try:
            while True:
                job.again = False
                try:
                    await self._serve(session_id, job)
                    failures = 0
                except OUTAGES as exc:
                    self.waits.seen()
                    if not self.accepting:
                        log.warning("reply for %s left due, store unavailable: %s", session_id, exc)
                        break
                    failures += 1
                    await self.waits.pause(failures, f"reply for {session_id}", exc)
                    job.again = True
                # No await between this test and the removal below: a kick() either set
                # `again` before it, or finds no job and starts a new one.
                if not (job.again and self.accepting):
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reply job for session %s failed", session_id)
        finally:
            if self._jobs.get(session_id) is job:
                del self._jobs[session_id]

    async def _serve(self, sid: str, job: Job) -> None:
        token = job.token
        if self.waits.recent() and await self._someone_elses_reply(sid, token):
            return  # its generator may be alive and about to take its lease back: not yet
        if not await self.lease.take(sid, token):
            return  # another generator holds it and looks again after releasing it
        job.lease_lost = False
        renewing = asyncio.Event()
        renewing.set()
        # Most jobs end well inside one renewal interval (an offline reply takes milliseconds):
        # the renewal task starts only when the job is still running after the first one, so
        # those jobs cost a timer instead of a task created and cancelled.
        renewer: list[asyncio.Task[None]] = []
        renewal = asyncio.get_running_loop().call_later(
            self.lease.ttl_ms / 3000,
            lambda: renewer.append(asyncio.create_task(self._renew(sid, token, job, renewing))),
        )
        owed = True
        outage = False
        owes_after = False
        job.released = False
        # Whether `conversation` is what this job's own write stored: such a write also took
        # the session out of the due set when it owes nothing more (see `_drop_due`).
        written = False
        try:
            conversation, job.fresh = job.fresh, None
            if conversation is None:
                conversation = await self._stored(job, sid, self._reader(sid))
            while self.accepting and not job.lease_lost:
                if conversation is None:
                    owed = False
                    break
                current = replies.marker(conversation)
                if current is not None and current.get("token") == token:
                    # Our own reply, cut off by an outage before it could be stored or closed.
                    conversation = await self._fail(
                        job,
                        sid,
                        str(current.get("reply_id")),
                        "generation_interrupted",
                        "the store was unavailable while generating this reply; "
                        "it is generated again",
                        retry=True,
                        counted=False,
                    )
                elif current is not None:
                    conversation = await self._close_dead(job, sid, current)
                elif replies.pending_seq(conversation) is None:
                    owed = False
                    break
                else:
                    conversation = await self._reply(sid, conversation, token, job)
                written = True
                if conversation is None:  # the last write did not say: read it
                    written = False
                    conversation = await self._stored(job, sid, self._reader(sid))
            if not owed:
                if not written:
                    await self._drop_due(sid, gone=conversation is None)
            elif not self.accepting:
                await self._mark_due(sid, delay=0)
        except _LeaseLost:
            pass  # whoever took the session over answers it
        except OUTAGES:
            # Keep the lease: this job takes it back with the same token and goes on.
            outage = True
            raise
        finally:
            renewing.clear()  # also stops it should the cancellation be swallowed (`tasks`)
            renewal.cancel()
            for task in renewer:
                task.cancel()
            # A completed reply that left nothing owed released the lease in its own write
            # (atomic with that state: a message stored after it finds the lease free and
            # starts its own reply), so then there is nothing to release or look at.
            if not outage and not job.released:
                with contextlib.suppress(StoreUnavailable):
                    # Released and looked at in one step: a message stored before the release
                    # is seen here; one stored after it finds the lease free for its own job.
                    owes_after = await self.lease.release_owing(sid, token)
        if owes_after:
            job.again = True

    async def _someone_elses_reply(self, sid: str, token: str) -> bool:
        """Whether the session has a reply of another generator (checked, without taking the
        lease, shortly after an outage: a lapsed lease does not mean its generator died, and
        closing its reply then would count an attempt the outage took, and race it)."""
        conversation = await self.manager.get_conversation_state(sid)
        current = None if conversation is None else replies.marker(conversation)
        return current is not None and current.get("token") != token

    def _reader(self, sid: str) -> Callable[[], Awaitable[ConversationState | None]]:
        return lambda: self.manager.get_conversation_state(sid)

    async def _stored(self, job: Job, sid: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run one step against the stores, waiting out their outages (see module doc).

        Gives up only when this replica stops taking work (the session stays due for
        another) or its lease was taken over (the new holder answers).
        """
        failures = 0
        while True:
            try:
                return await step()
            except OUTAGES as exc:
                self.waits.seen()
                if job.lease_lost:
                    raise _LeaseLost from exc
                if not self.accepting:
                    raise
                failures += 1
                await self.waits.pause(failures, f"session {sid}", exc)
            if job.lease_lost:
                raise _LeaseLost

    async def _reply(
        self, sid: str, conversation: ConversationState, token: str, job: Job
    ) -> ConversationState | None:
        """Generate one reply; returns the state after it (None when unknown).

        `conversation` is the state just read; it is changed in place by the first write.
        """
        reply_id = uuid.uuid4().hex
        max_attempts = self.settings.generation_max_attempts

        def start(state: ConversationState) -> Event:
            event = replies.start_reply(
                state, reply_id=reply_id, token=token, max_attempts=max_attempts
            )
            if event is None:
                raise _NoWrite
            return event

        # The case analysis goes in the same write as `message.started` when the assessor
        # knows the orchestration (one script, one read for the stream's tailers).
        assessor = self.assessor
        plan = await self._stored(job, sid, lambda: assessor.plan(sid, conversation))
        given = conversation.version
        try:
            try:
                conversation = await self._write(
                    job, sid, conversation, start, companion=plan.companion
                )
            except CompanionConflict:
                assessor.forget(sid)  # the orchestration moved on: the assessor reads it
                plan = Assessment(plan.analysis, None)
                conversation = await self._write(job, sid, None, start)
        except _NoWrite:
            return None
        # Only a first attempt carries the companion (the analysis is of the state it started
        # from): written exactly when the version went up by one.
        recorded = plan.companion is not None and conversation.version == given + 1
        if recorded:
            assert plan.companion is not None
            assessor.recorded(sid, plan.companion)
        if replies.marker(conversation) is None:
            metrics.reply("failed")
            return conversation  # attempts used up: closed with an error event
        metrics.reply("started")
        started = time.perf_counter()
        replica_stats.replies_started += 1
        try:
            with span("reply.generate", session_id=sid, reply_id=reply_id):
                analysis = plan.analysis if recorded else None
                text, last_delta = await self._generate(sid, reply_id, conversation, job, analysis)
        except asyncio.CancelledError:
            # Shutdown grace is over: close the reply for clients; another replica retries.
            # Not the reply's fault, so the attempt is not counted.
            with contextlib.suppress(*OUTAGES):
                await self._fail(
                    None,
                    sid,
                    reply_id,
                    "generation_interrupted",
                    "the server stopped while generating this reply; it is generated again",
                    retry=True,
                    counted=False,
                )
            await self._mark_due(sid, delay=0)
            raise
        except _LeaseLost:
            return None  # whoever took the session over closes this reply
        except SessionNotFound:
            return None  # deleted while replying: nothing left to answer
        except GenerationError as exc:
            return await self._fail(job, sid, reply_id, "generation_failed", str(exc), retry=False)
        except OUTAGES:
            raise  # this replica stops taking work: the marker stays, the session due
        except Exception as exc:
            log.exception("reply generator failed for session %s", sid)
            return await self._fail(
                job,
                sid,
                reply_id,
                "generation_failed",
                f"the reply generator failed: {exc}",
                retry=False,
            )

        def complete(state: ConversationState) -> Event:
            event = replies.complete_reply(
                state,
                reply_id=reply_id,
                text=text,
                generator=self.generator.name,
                max_history=self.settings.max_conversation_history,
            )
            if event is None:
                raise _NoWrite
            return event

        try:
            # The write that leaves nothing owed also releases the lease (see `_serve`).
            done = await self._write(
                job, sid, conversation, complete, leading=last_delta, release=token
            )
        except (_NoWrite, SessionNotFound):
            return None
        job.released = not replies.owes_reply(done)
        metrics.reply_completed(started)
        replica_stats.replies_completed += 1
        return done

    async def _generate(
        self,
        sid: str,
        reply_id: str,
        conversation: ConversationState,
        job: Job,
        analysis: CaseAnalysis | None = None,
    ) -> tuple[str, tuple[Event, ...]]:
        """Stream the reply into the session's stream as `message.delta` events.

        The generator runs in its own task and the deltas are written one at a time: chunks
        that arrive while a write is in flight go out together in the next delta. A paced
        generator (an LLM) still gets one delta per chunk; one that has the whole reply at
        once (the offline interviewer without pacing) costs no delta write of its own: what
        is unsent when the generator ends is returned as one last delta, which the completing
        write appends just before `message.completed`, in the same script.
        """
        if analysis is None:  # not recorded with the reply's start: the assessor records it
            assessor = self.assessor
            analysis = await self._stored(job, sid, lambda: assessor.assess(sid, conversation))
        marker = replies.marker(conversation)
        assert marker is not None
        deltas = Deltas(reply_id, marker["in_reply_to"])
        ready = asyncio.Event()
        stream = self.generator.stream_reply(conversation, analysis)

        async def produce() -> None:
            try:
                async for chunk in stream:
                    if chunk:
                        deltas.add(chunk)
                        ready.set()
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

        append = functools.partial(self.manager.append_event, sid)
        producer = asyncio.create_task(produce())
        producer.add_done_callback(lambda _: ready.set())
        try:
            while True:
                await ready.wait()
                ready.clear()
                if job.lease_lost:
                    raise _LeaseLost
                if producer.done():
                    producer.result()  # the generator's own error, if it failed
                    break
                if deltas.unsent:
                    event = deltas.take()
                    appended = await self._stored(job, sid, functools.partial(append, event))
                    if appended is None:
                        raise SessionNotFound(f"session {sid} was deleted while replying")
        finally:
            if not producer.done():
                producer.cancel()
                await asyncio.wait({producer})
        text = deltas.text()
        if not text:
            raise GenerationError("the reply generator produced an empty reply")
        return text, deltas.rest()

    async def _write(
        self,
        job: Job,
        sid: str,
        state: ConversationState | None,
        mutate: Callable[[ConversationState], Event],
        *,
        leading: tuple[Event, ...] = (),
        release: str | None = None,
        companion: Companion | None = None,
    ) -> ConversationState:
        """`update()` starting from a state this job already holds (no re-read first).

        When someone wrote in between (a new user message), the version check fails and
        `update()` re-reads and retries as usual. After an outage it reads afresh: the
        refused attempt changed `state` in place.
        """
        given: ConversationState | None = state

        async def attempt() -> ConversationState:
            nonlocal given
            current, given = given, None
            written, _ = await self.manager.update_returning_event(
                sid,
                mutate,
                current=current,
                leading=leading,
                release=release,
                companion=companion,
                index=False,  # the user's index keeps their own last message's time
            )
            return written

        return await self._stored(job, sid, attempt)

    async def _fail(
        self,
        job: Job | None,
        sid: str,
        reply_id: str,
        code: str,
        message: str,
        *,
        retry: bool,
        counted: bool = True,
    ) -> ConversationState | None:
        """Close the reply with an `error` event (waiting out outages, given a `job`)."""
        max_attempts = self.settings.generation_max_attempts
        retrying = [False]  # what the last attempt of the write said (for the metrics)

        def fail(state: ConversationState) -> Event:
            event = replies.fail_reply(
                state,
                reply_id=reply_id,
                code=code,
                message=message,
                retry=retry,
                max_attempts=max_attempts,
                counted=counted,
            )
            if event is None:
                raise _NoWrite
            retrying[0] = bool(event.data["retrying"])
            return event

        async def write() -> ConversationState:
            state, _ = await self.manager.update_returning_event(sid, fail, index=False)
            return state

        try:
            state = await (write() if job is None else self._stored(job, sid, write))
        except (_NoWrite, SessionNotFound):
            return None
        metrics.reply("retried" if retrying[0] else "failed")
        replica_stats.replies_failed += 1
        return state

    async def _close_dead(
        self, job: Job, sid: str, dead: dict[str, object]
    ) -> ConversationState | None:
        log.warning(
            "session %s: closing reply %s of a generator that died", sid, dead.get("reply_id")
        )
        # Counted: a reply whose generation kills its replica must not loop for ever.
        return await self._fail(
            job,
            sid,
            str(dead.get("reply_id")),
            "generation_interrupted",
            "the replica generating this reply stopped; it is generated again",
            retry=True,
        )

    # ------------------------------------------------------------ lease, sweep

    async def _renew(self, sid: str, token: str, job: Job, renewing: asyncio.Event) -> None:
        """Renew the lease now (one interval after the job took it), then every interval
        while `renewing` is set."""
        interval = self.lease.ttl_ms / 3000
        outage = False
        while renewing.is_set():
            try:
                # After an outage the lease may have expired meanwhile: take it back when
                # nobody else did (the job was waiting, not dead).
                held = await (self.lease.take if outage else self.lease.renew)(sid, token)
                outage = False
                if not held:
                    log.warning("session %s: lease lost; stopping this reply", sid)
                    job.lease_lost = True
                    return
                await self._mark_due(sid, delay=self.lease.ttl_ms / 1000)
            except StoreUnavailable as exc:
                outage = True
                self.waits.seen()
                log.warning("session %s: lease renewal failed (%s); retrying", sid, exc)
            await asyncio.sleep(interval)

    async def _mark_due(self, sid: str, *, delay: float) -> None:
        """Move the session's due entry (XX: only one a state write put there; a session
        that owes nothing any more must not come back)."""
        with contextlib.suppress(StoreUnavailable):
            await self.manager.due.push(sid, delay)

    async def _drop_due(self, sid: str, *, gone: bool) -> None:
        """Nothing owed: drop a due entry the writes left behind (a session deleted, or one
        written before the due set was kept by the writes)."""
        removed = await self.manager.due.drop(sid)
        if removed and not gone:
            # Look again: a message stored just before the ZREM had its entry taken with it.
            conversation = await self.manager.get_hot_conversation_state(sid)
            if conversation is not None and replies.owes_reply(conversation):
                await self.manager.due.add_now(sid)

    async def _sweep_loop(self) -> None:
        while self.accepting:
            await asyncio.sleep(self.settings.generation_sweep_seconds)
            try:
                await self.sweep()
            except StoreUnavailable as exc:
                self.waits.seen()
                log.warning("reply sweep skipped: %s", exc)

    async def sweep(self) -> int:
        """Start replies for due sessions whose generator is gone. Returns how many started."""
        started = 0
        for sid in await self.manager.due.due(limit=200):
            if sid in self._jobs:
                continue
            if await self.lease.is_held(sid):
                await self._mark_due(sid, delay=self.lease.ttl_ms / 1000)
                continue
            self.kick(sid)
            started += 1
        return started


class _LeaseLost(Exception):
    pass
