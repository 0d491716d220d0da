"""Recently decoded conversations, each kept with the exact JSON bytes it stands for.

Why: every state read decodes a whole document, and the same process keeps reading documents
it has just written or already decoded (a read-modify-write loop, the reply runner reading a
session between its own writes, history requests while a reply streams). Decoding a 100-message
conversation costs ~30 us of CPU, more than the rest of the read; comparing it with the bytes
seen last time costs well under one.

Why it is safe:

* A hit needs the bytes Redis returned to equal the cached bytes, so a cached state is never
  stale, whoever wrote the session (another replica, a restore, a migration).
* Callers get a copy (`ConversationState.clone`) they may change freely; the copies share only
  the messages, which are frozen.
* A state cached after a write is what decoding its bytes gives back: its `data` goes through
  JSON once more (a tuple would come back a list), and message metadata was made JSON when the
  message was appended (`ConversationState.append_message`).

Bounded (least recently used first out); a full-window conversation costs roughly three times
its JSON size. One per state manager, so per process.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from backend.state.schemas import ConversationState


class DecodedConversations:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[bytes, ConversationState]] = OrderedDict()

    def get(self, key: str, raw: bytes) -> ConversationState | None:
        """A private copy of the state `raw` decodes to, if it was cached under `key`."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != raw:
            return None
        self._entries.move_to_end(key)
        return entry[1].clone()

    def decoded(self, key: str, raw: bytes, state: ConversationState) -> None:
        """`state` was just decoded from `raw` (and will be handed to a caller)."""
        self._put(key, raw, state.clone())

    def written(self, key: str, raw: bytes, state: ConversationState) -> None:
        """`state` was just stored as `raw` (and stays with the caller, who may change it)."""
        data = msgspec.json.decode(msgspec.json.encode(state.data))
        self._put(
            key, raw, msgspec.structs.replace(state, messages=list(state.messages), data=data)
        )

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    def _put(self, key: str, raw: bytes, state: ConversationState) -> None:
        if self.capacity <= 0:
            return
        self._entries[key] = (raw, state)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
