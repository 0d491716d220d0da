-- Versioned write of one state document, its sliding TTLs and its event, atomically.
--
-- KEYS[1]  the state hash being written: {version, doc, meta} (meta: a small JSON object of
--          the fields listings and stats need, so they never parse whole documents)
-- KEYS[2]  the session's other state hash (conversation <-> orchestration): TTL slid only
-- KEYS[3]  the session's event stream
-- KEYS[4]  the session's Idempotency-Key records (a hash: key -> JSON record), KEYS[5] the
--          previous generation of them (same hash tag; touched only with ARGV[14])
-- KEYS[6]  the user's session index, KEYS[7] the dirty set, KEYS[8] the replies' due set:
--          only on a single Redis node. On a cluster they live in other slots, so the caller
--          leaves them out and sends touch_index.lua and the ZADD/ZREMs in the same pipeline.
-- KEYS[9]  the session's notification stream (single node only, like KEYS[6..8]): gets the
--          session id when an event was appended (on a cluster the caller adds it after the
--          script has answered, so the notification never arrives before the event)
-- ARGV[1]  mode: "cas" (current version must equal ARGV[2]) or
--                "restore" (write only when current version < ARGV[2]; keeps ARGV[2])
-- ARGV[2]  expected version ("cas") or the restored version ("restore")
-- ARGV[3]  TTL of KEYS[1], ARGV[4] TTL of KEYS[2] (seconds); the stream gets the longer one
-- ARGV[5]  stream MAXLEN (approximate trimming)
-- ARGV[6]  event type ("" for no event), ARGV[7] event data (JSON)
-- ARGV[8]  the document (JSON), ARGV[9] its meta (JSON)
-- ARGV[10] session id, ARGV[11] index score (us; "" leaves the index alone), ARGV[12] index
--          TTL (seconds), ARGV[13] dirty score ("" leaves the session unmarked)
-- ARGV[14] the client's Idempotency-Key ("" for none), ARGV[15] its record (JSON object; the
--          script adds event_id and version), ARGV[16] records per generation, ARGV[17] TTL
-- ARGV[18] due score: a number when the written conversation owes a reply (added, or moved
--          earlier: ZADD LT), "-" when it owes none (removed), "" for no change
-- ARGV[19] MAXLEN of the notification stream (with KEYS[9])
--
-- Returns {1, new_version, event_id or ""} on success, {0, current_version} on conflict,
-- {2, record} when a write with the same Idempotency-Key already happened (nothing written).
-- The key is looked up before the version check: a duplicate that read the state before the
-- first write landed still finds the first write's record instead of writing again.
-- The document's own "version" field is filled in by the caller to the value returned here;
-- a mismatching write is refused, so the two never disagree.

if ARGV[14] ~= '' then
  local seen = redis.call('HGET', KEYS[4], ARGV[14]) or redis.call('HGET', KEYS[5], ARGV[14])
  if seen then
    return {2, seen}
  end
end

local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local requested = tonumber(ARGV[2])
local new_version

if ARGV[1] == 'cas' then
  if current ~= requested then
    return {0, current}
  end
  new_version = requested + 1
else
  if current >= requested then
    return {0, current}
  end
  new_version = requested
end

redis.call('HSET', KEYS[1], 'version', new_version, 'doc', ARGV[8], 'meta', ARGV[9])
redis.call('EXPIRE', KEYS[1], ARGV[3])
-- EXPIRE on a missing key is a no-op: a session without an orchestration stays without one.
redis.call('EXPIRE', KEYS[2], ARGV[4])

local event_id = ''
if ARGV[6] ~= '' then
  event_id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*',
    'type', ARGV[6], 'version', new_version, 'data', ARGV[7])
end
redis.call('EXPIRE', KEYS[3], math.max(tonumber(ARGV[3]), tonumber(ARGV[4])))

if ARGV[14] ~= '' then
  local record = cjson.decode(ARGV[15])
  record['event_id'] = event_id
  record['version'] = new_version
  if redis.call('HLEN', KEYS[4]) >= tonumber(ARGV[16]) then
    redis.call('RENAME', KEYS[4], KEYS[5])
  end
  redis.call('HSET', KEYS[4], ARGV[14], cjson.encode(record))
  redis.call('EXPIRE', KEYS[4], ARGV[17])
end

if KEYS[6] and ARGV[11] ~= '' then
  -- Same as touch_index.lua; a new session (the only thing that grows the index) also drops
  -- the entries that are older than the TTL.
  redis.call('ZADD', KEYS[6], ARGV[11], ARGV[10])
  if current == 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf',
      '(' .. (tonumber(ARGV[11]) - tonumber(ARGV[12]) * 1000000))
  end
  redis.call('EXPIRE', KEYS[6], ARGV[12])
end
if KEYS[7] and ARGV[13] ~= '' then
  redis.call('ZADD', KEYS[7], 'NX', ARGV[13], ARGV[10])
end
if KEYS[8] and ARGV[18] == '-' then
  redis.call('ZREM', KEYS[8], ARGV[10])
elseif KEYS[8] and ARGV[18] ~= '' then
  redis.call('ZADD', KEYS[8], 'LT', ARGV[18], ARGV[10])
end
if KEYS[9] and event_id ~= '' then
  redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[19], '*', 's', ARGV[10])
end
return {1, new_version, event_id}
