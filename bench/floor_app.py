"""The floor for the chat benchmark: the least a chat message can cost on this stack.

A minimal FastAPI + sse-starlette app, run by uvicorn like the project's replica, with the
same route and the same events: per message it reads the session's JSON document, appends the
message and a canned reply, writes it back as one versioned write (version check, document,
and the message's events appended to the session's Redis Stream, in one Lua script), then
streams those events to the client from the stream. No authentication, no rate limit, no
lease, no background task, no orchestration, no durability: what is left is the HTTP and SSE
stack and one read + one write + one stream read per message.

Run by `bench/sse_chat.py` (`FloorReplica`); configured by env: FLOOR_REDIS_URL, FLOOR_PREFIX.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

_WRITE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current ~= tonumber(ARGV[1]) then
  return false
end
redis.call('HSET', KEYS[1], 'version', current + 1, 'doc', ARGV[2])
redis.call('EXPIRE', KEYS[1], 86400)
local first
for i = 3, #ARGV, 2 do
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'type', ARGV[i],
    'data', ARGV[i + 1])
  first = first or id
end
redis.call('EXPIRE', KEYS[2], 86400)
return first
"""

REPLY = "Entendi. Pode me contar quando isso aconteceu e se você tem algum documento?"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    client = aioredis.Redis.from_url(os.environ["FLOOR_REDIS_URL"], decode_responses=True)
    app.state.redis = client
    app.state.write = client.register_script(_WRITE)
    app.state.prefix = os.environ.get("FLOOR_PREFIX", "floor")
    yield
    await client.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/health/ready")
async def ready() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/agents/chat")
async def chat(request: Request) -> EventSourceResponse:
    body = await request.json()
    state = request.app.state
    sid = body.get("session_id") or uuid.uuid4().hex
    doc_key, stream_key = f"{state.prefix}:{{{sid}}}:doc", f"{state.prefix}:{{{sid}}}:events"
    version, raw = await state.redis.hmget(doc_key, ["version", "doc"])
    doc: dict[str, Any] = json.loads(raw) if raw else {"session_id": sid, "messages": []}
    seq = len(doc["messages"]) + 1
    doc["messages"] += [
        {"seq": seq, "role": "user", "content": body["message"]},
        {"seq": seq + 1, "role": "assistant", "content": REPLY},
    ]
    events = [
        ("message.created", {"seq": seq, "content": body["message"]}),
        ("message.started", {"in_reply_to": seq}),
        ("triage.updated", {"stage": "interviewing"}),
        ("message.delta", {"in_reply_to": seq, "delta": REPLY}),
        ("message.completed", {"in_reply_to": seq, "content": REPLY}),
    ]
    args: list[Any] = [int(version or 0), json.dumps(doc)]
    for kind, data in events:
        args += [kind, json.dumps({"session_id": sid, **data})]
    first = await state.write(keys=[doc_key, stream_key], args=args)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        rows = await state.redis.xrange(stream_key, min=first, count=len(events))
        for entry_id, fields in rows:
            yield ServerSentEvent(data=fields["data"], event=fields["type"], id=entry_id)

    return EventSourceResponse(stream(), headers={"X-Session-Id": sid})
