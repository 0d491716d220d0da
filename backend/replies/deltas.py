"""The chunks of one reply as `message.delta` events: what arrived while a write was in flight
goes out together in the next delta, and what is unsent when the generator ends rides in the
completing write (`ReplyRunner._generate`)."""

from __future__ import annotations

from backend.state.schemas import Event


class Deltas:
    __slots__ = ("in_reply_to", "index", "parts", "reply_id", "unsent")

    def __init__(self, reply_id: str, in_reply_to: int) -> None:
        self.reply_id = reply_id
        self.in_reply_to = in_reply_to
        self.index = 0
        self.parts: list[str] = []
        self.unsent: list[str] = []

    def add(self, chunk: str) -> None:
        self.parts.append(chunk)
        self.unsent.append(chunk)

    def take(self) -> Event:
        """The next delta: every chunk not sent yet."""
        text = "".join(self.unsent)
        self.unsent.clear()
        self.index += 1
        return Event(
            type="message.delta",
            data={
                "reply_id": self.reply_id,
                "in_reply_to": self.in_reply_to,
                "index": self.index - 1,
                "delta": text,
            },
        )

    def rest(self) -> tuple[Event, ...]:
        """The last delta, for the completing write (none when everything went out)."""
        return (self.take(),) if self.unsent else ()

    def text(self) -> str:
        return "".join(self.parts).strip()
