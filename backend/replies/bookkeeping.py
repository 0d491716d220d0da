"""What a conversation owes: pure functions over the state document, and the reply events.

Bookkeeping lives in the conversation's `data`, so any replica can read it:

* `replied_through`: the highest user message `seq` that has its reply (or was closed for good
  with an error). A reply answers every user message stored before it started, so two messages
  posted together get one reply; a message posted while a reply is being generated gets the
  next one.
* `generation`: the reply being generated now: `reply_id`, `in_reply_to` (the user seq it
  answers), `token` (the lease token of its generator), `started_at`. A marker whose token is
  not the current lease holder's belongs to a generator that died: it is closed with an
  `error` event and the reply is generated again, at most `GENERATION_MAX_ATTEMPTS` times.
* `attempts`: `{in_reply_to, count}` of the reply being attempted. An attempt counts when it
  ends by the generator's own failure or its replica's death; one stopped by a store outage or
  a shutdown is handed back (`counted=False`), so outages never use up a reply.
"""

from __future__ import annotations

from backend.state.owed import answered_through, marker, owes_reply, pending_seq
from backend.state.schemas import ConversationState, Event, Message, to_jsonable, utcnow

__all__ = [
    "answered_through",
    "complete_reply",
    "fail_reply",
    "marker",
    "owes_reply",
    "pending_seq",
    "reply_error",
    "start_reply",
    "user_message_event",
]


def user_message_event(message: Message) -> Event:
    return Event(type="message.created", data={"message": to_jsonable(message)})


def start_reply(
    conversation: ConversationState, *, reply_id: str, token: str, max_attempts: int
) -> Event | None:
    """Mark the reply as being generated (`message.started`), or give up on it for good.

    Returns None when there is nothing to answer. Gives up (an `error` event, the message
    counted as answered) once a reply has been attempted `max_attempts` times.
    """
    seq = pending_seq(conversation)
    if seq is None or marker(conversation) is not None:
        return None
    attempts = conversation.data.get("attempts") or {}
    count = int(attempts.get("count", 0)) + 1 if attempts.get("in_reply_to") == seq else 1
    if count > max_attempts:
        conversation.data["replied_through"] = seq
        conversation.data.pop("attempts", None)
        return reply_error(
            None,
            seq,
            code="generation_failed",
            message=f"the reply could not be generated after {max_attempts} attempts; "
            "send the message again",
            retrying=False,
        )
    conversation.data["attempts"] = {"in_reply_to": seq, "count": count}
    conversation.data["generation"] = {
        "reply_id": reply_id,
        "in_reply_to": seq,
        "token": token,
        "started_at": utcnow().isoformat(),
    }
    return Event(
        type="message.started",
        data={"reply_id": reply_id, "in_reply_to": seq, "attempt": count},
    )


def complete_reply(
    conversation: ConversationState,
    *,
    reply_id: str,
    text: str,
    generator: str,
    max_history: int,
) -> Event | None:
    """Store the finished reply (`message.completed`); None if this reply is no longer current."""
    current = marker(conversation)
    if current is None or current.get("reply_id") != reply_id:
        return None
    in_reply_to = int(current["in_reply_to"])
    message = conversation.append_message(
        "assistant",
        text,
        max_history=max_history,
        metadata={"reply_id": reply_id, "in_reply_to": in_reply_to, "generator": generator},
    )
    _close(conversation, in_reply_to, answered=True)
    return Event(
        type="message.completed",
        data={
            "reply_id": reply_id,
            "in_reply_to": in_reply_to,
            "message": to_jsonable(message),
        },
    )


def fail_reply(
    conversation: ConversationState,
    *,
    reply_id: str,
    code: str,
    message: str,
    retry: bool,
    max_attempts: int,
    counted: bool = True,
) -> Event | None:
    """Close the reply with an `error` event; None if it is no longer current.

    With `retry`, the user message stays owed (another attempt follows) unless the attempts
    are used up; without it, the message counts as answered (the error is the answer).
    `counted=False` (with `retry`): this attempt was stopped by something other than the
    reply's own work (a store outage, a shutdown); it is given back and another always follows.
    """
    current = marker(conversation)
    if current is None or current.get("reply_id") != reply_id:
        return None
    in_reply_to = int(current["in_reply_to"])
    attempts = conversation.data.get("attempts") or {}
    count = int(attempts.get("count", 1))
    retrying = retry and (not counted or count < max_attempts)
    if retrying and not counted and attempts.get("in_reply_to") == in_reply_to:
        conversation.data["attempts"] = {"in_reply_to": in_reply_to, "count": max(0, count - 1)}
    _close(conversation, in_reply_to, answered=not retrying)
    return reply_error(reply_id, in_reply_to, code=code, message=message, retrying=retrying)


def reply_error(
    reply_id: str | None, in_reply_to: int, *, code: str, message: str, retrying: bool
) -> Event:
    return Event(
        type="error",
        data={
            "code": code,
            "message": message,
            "reply_id": reply_id,
            "in_reply_to": in_reply_to,
            "retrying": retrying,
        },
    )


def _close(conversation: ConversationState, in_reply_to: int, *, answered: bool) -> None:
    conversation.data.pop("generation", None)
    if answered:
        conversation.data["replied_through"] = max(answered_through(conversation), in_reply_to)
        conversation.data.pop("attempts", None)
