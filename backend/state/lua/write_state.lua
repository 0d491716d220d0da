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
-- ARGV[1]  mode: "cas" (current version must equal ARGV[2]) or
--                "restore" (write only when current version < ARGV[2]; keeps ARGV[2])
-- ARGV[2]  expected version ("cas") or the restored version ("restore")
-- ARGV[3]  TTL of KEYS[1], ARGV[4] TTL of KEYS[2] (seconds); the stream gets the longer one
-- ARGV[5]  stream MAXLEN (approximate trimming)
-- ARGV[6]  event type ("" for no event), ARGV[7] event data (JSON)
-- ARGV[8]  the document (JSON), ARGV[9] its meta (JSON)
-- ARGV[10] session id, ARGV[11] index score (us; "" leaves the index alone: the reply
--          runner's writes, so a user's sessions are ordered by their own last write),
--          ARGV[12] index TTL (seconds), ARGV[13] dirty score ("" leaves the session
--          unmarked; skipped while the hash's `dirty` field says it is in the set already, see
--          release_dirty.lua)
-- ARGV[14] the client's Idempotency-Key ("" for none), ARGV[15] its record (JSON object; the
--          script adds event_id and version), ARGV[16] records per generation, ARGV[17] TTL
-- ARGV[18] due score: a number when the written conversation owes a reply (added, or moved
--          earlier: ZADD LT), "-" when it owes none (removed), "" for no change. The hash
--          keeps whether it owes (`owes`): a "cas" write over a state that already owed skips
--          the ZADD (that state's own write put the entry there; the runner, the only other
--          remover, looks again after its ZREM and puts back what still owes).
-- ARGV[19] now (seconds), ARGV[20] how often the sliding TTLs are refreshed (seconds): the
--          EXPIREs of KEYS[1], KEYS[2], KEYS[3] and KEYS[6] run only when the last refresh of
--          KEYS[1] (its `slid` field) is older than that, so a busy session pays them once per
--          interval instead of four per write; its keys still expire between TTL - interval
--          and TTL after its last write. Every refresh is in this script (invariant 2).
-- ARGV[21] m, the number of events appended before the write's own event (state-less events,
--          e.g. a reply's last deltas, stamped with the version they follow), then their
--          (type, data) pairs in ARGV[22 .. 21 + 2m]
--
-- KEYS[9 ..] and ARGV[22 + 2m] n, then n (limit, window ms) pairs: fixed-window rate-limit
--          counters this write counts a hit on (single node only: they sit in other slots, so
--          on a cluster the caller runs rate_limit.lua in the same pipeline round instead). As
--          rate_limit.lua: INCR, PEXPIRE on the window's first hit, PTTL only past the limit.
-- KEYS[9 + n] and ARGV[24 + 2m + 2n] (single node only): the session's stream-partition
--          notification stream and its MAXLEN ("" on a cluster, where the caller sends the
--          notification after the script: another slot). Appended once, after all of this
--          write's events, when it appended any: it wakes the replicas' stream readers and
--          carries the events themselves (state/notify.py).
-- ARGV[23 + 2m + 2n] a reply lease token ("" for none): when the written conversation owes
--          nothing and the session's lease (the last key, KEYS[#KEYS], same hash tag) holds
--          this token, it is released by this write: the generator's last write lets go of
--          the session in the same step that shows it owes nothing (lease_release_owing.lua
--          otherwise). With a token, the caller always passes the lease key last.
-- ARGV[25 + 2m + 2n] the most bytes of event data a notification carries (a larger write is
--          announced without its events), ARGV[26 + 2m + 2n] "1" when KEYS[1] is the
--          conversation, "2" when KEYS[2] is. The conversation hash keeps the id of its
--          session stream's last entry (`last`): every append to the stream goes through this
--          script or append_event.lua, which keep it (in the HSET the write makes anyway), so a
--          notification can say which entry its events follow. A write of the orchestration
--          alone drops it instead (one HDEL: the next notifications then make readers read).
-- ARGV[27 + 2m + 2n] a companion write of the session's other document (KEYS[2]): the
--          version it was read at ("" for none), then its document, meta, event type ("" for
--          none) and event data. Checked before anything is written (a stale companion fails
--          the whole write with {4, its current version}), stored with version + 1 after this
--          write's own event, its event appended after it (a reply's start with the case
--          analysis it is generated from: one script, one read of the stream by its tailers).
--
-- Returns {1, new_version, event_id or ""} on success (on a cluster with a fourth element: the
-- notification's fields for the caller to append, empty when the write appended no event),
-- {0, current_version} on conflict,
-- {2, record} when a write with the same Idempotency-Key already happened (nothing written),
-- {3, i, ms until the window resets} when counter i is past its limit (nothing written).
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

local limits_at = 22 + 2 * tonumber(ARGV[21])
local limit_count = tonumber(ARGV[limits_at] or '0')
for i = 1, limit_count do
  local limit, window = ARGV[limits_at + 2 * i - 1], ARGV[limits_at + 2 * i]
  local hits = redis.call('INCR', KEYS[8 + i])
  if hits == 1 then
    redis.call('PEXPIRE', KEYS[8 + i], window)
  elseif hits > tonumber(limit) then
    local ttl = redis.call('PTTL', KEYS[8 + i])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[8 + i], window)
      ttl = tonumber(window)
    end
    return {3, i, ttl}
  end
end

local stored = redis.call('HMGET', KEYS[1], 'version', 'slid', 'owes', 'dirty', 'last')
local current = tonumber(stored[1] or '0')
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

local comp_at = limits_at + 2 * limit_count + 5
local comp_new = false
if ARGV[comp_at] and ARGV[comp_at] ~= '' then
  local comp_current = tonumber(redis.call('HGET', KEYS[2], 'version') or '0')
  if comp_current ~= tonumber(ARGV[comp_at]) then
    return {4, comp_current}
  end
  comp_new = comp_current + 1
end

local owes = false
if ARGV[18] == '-' then
  owes = '0'
elseif ARGV[18] ~= '' then
  owes = '1'
end

local now = tonumber(ARGV[19])
local slide = stored[2] == false or now - tonumber(stored[2]) >= tonumber(ARGV[20])
  or now < tonumber(stored[2])  -- a writer whose clock is behind: refresh rather than trust it
local fields = {'version', new_version, 'doc', ARGV[8], 'meta', ARGV[9]}
if slide then
  fields[#fields + 1], fields[#fields + 2] = 'slid', ARGV[19]
end
if owes then
  fields[#fields + 1], fields[#fields + 2] = 'owes', owes
end
-- The hash remembers that its session is in the dirty set (`dirty` = 1) until a release
-- (release_dirty.lua) clears both together: later writes skip the ZADD NX.
local mark_dirty = KEYS[7] and ARGV[13] ~= '' and stored[4] ~= '1'
if mark_dirty then
  fields[#fields + 1], fields[#fields + 2] = 'dirty', '1'
end

-- The first write is an XADD or the HSET (never an EXPIRE): Redis refuses a script's first
-- write past maxmemory (a full Redis answers "store unavailable", nothing written), not the
-- ones after it. The HSET comes after the events, so it can keep the last one's id.
-- Without a refresh the stream is appended to only if it exists (NOMKSTREAM): one that was
-- lost on its own is created again with its TTL, never left without one.
local stream_ttl = slide
-- What this write appended, as its notification carries it: each entry's id, then its type,
-- version and data on one line each (types and versions hold no newline, nor does JSON).
local appended, appended_bytes = {}, 0
local function append(type, version, data)
  local id = false
  if not stream_ttl then
    id = redis.call('XADD', KEYS[3], 'NOMKSTREAM', 'MAXLEN', '~', ARGV[5], '*',
      'type', type, 'version', version, 'data', data)
    stream_ttl = not id
  end
  id = id or redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*',
    'type', type, 'version', version, 'data', data)
  appended[#appended + 1], appended[#appended + 2] = id, type .. '\n' .. version .. '\n' .. data
  appended_bytes = appended_bytes + #data
  return id
end

for i = 1, tonumber(ARGV[21]) do
  append(ARGV[20 + 2 * i], current, ARGV[21 + 2 * i])
end
local event_id = ''
if ARGV[6] ~= '' then
  event_id = append(ARGV[6], new_version, ARGV[7])
end
if comp_new then
  local comp_fields = {'version', comp_new, 'doc', ARGV[comp_at + 1], 'meta', ARGV[comp_at + 2]}
  local comp_slide = slide or comp_new == 1
  if comp_slide then
    comp_fields[#comp_fields + 1], comp_fields[#comp_fields + 2] = 'slid', ARGV[19]
  end
  redis.call('HSET', KEYS[2], unpack(comp_fields))
  if comp_slide then
    redis.call('EXPIRE', KEYS[2], ARGV[4])
  end
  if ARGV[comp_at + 3] ~= '' then
    append(ARGV[comp_at + 3], comp_new, ARGV[comp_at + 4])
  end
end
local keeps_last = ARGV[comp_at - 1] == '1'
if keeps_last and #appended > 0 then
  fields[#fields + 1], fields[#fields + 2] = 'last', appended[#appended - 1]
end
redis.call('HSET', KEYS[1], unpack(fields))
if slide then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
if slide and not comp_new then  -- (a companion's write has just slid it)
  -- EXPIRE on a missing key is a no-op: a session without an orchestration stays without one.
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
if stream_ttl then
  redis.call('EXPIRE', KEYS[3], math.max(tonumber(ARGV[3]), tonumber(ARGV[4])))
end

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
  -- A new member may mean a new index (the old one emptied): it gets its TTL then too.
  local added = redis.call('ZADD', KEYS[6], ARGV[11], ARGV[10])
  if current == 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf',
      '(' .. (tonumber(ARGV[11]) - tonumber(ARGV[12]) * 1000000))
  end
  if slide or added == 1 then
    redis.call('EXPIRE', KEYS[6], ARGV[12])
  end
end
if mark_dirty then
  redis.call('ZADD', KEYS[7], 'NX', ARGV[13], ARGV[10])
end
if KEYS[8] and ARGV[18] == '-' then
  redis.call('ZREM', KEYS[8], ARGV[10])
elseif KEYS[8] and ARGV[18] ~= '' and not (ARGV[1] == 'cas' and stored[3] == '1') then
  redis.call('ZADD', KEYS[8], 'LT', ARGV[18], ARGV[10])
end
local token = ARGV[comp_at - 4]
if token and token ~= '' and owes == '0' and redis.call('GET', KEYS[#KEYS]) == token then
  redis.call('DEL', KEYS[#KEYS])
end
local note = {}
if #appended > 0 then
  -- The events ride in the notification only when the entry they follow is known (a reader
  -- whose cursor is there delivers them without reading the stream) and they are small;
  -- otherwise only their ids do.
  local prev = keeps_last and stored[5]
  if not keeps_last then
    redis.call('HDEL', KEYS[2], 'last')
  end
  local carried = prev and appended_bytes <= tonumber(ARGV[comp_at - 2])
  note = {'s', ARGV[10]}
  if carried then
    note[3], note[4] = 'p', prev
  end
  for i = 1, #appended, 2 do  -- the ids always: a reader knows how far this write went
    note[#note + 1], note[#note + 2] = appended[i], carried and appended[i + 1] or ''
  end
end
local notify_maxlen = ARGV[comp_at - 3]
if notify_maxlen ~= '' then
  if #note > 0 then
    redis.call('XADD', KEYS[9 + limit_count], 'MAXLEN', '~', notify_maxlen, '*', unpack(note))
  end
  return {1, new_version, event_id}
end
return {1, new_version, event_id, note}
