-- Append one event to a session's stream, which keeps the TTL the session's state writes
-- give it (write_state.lua slides it with the state's): a delta costs no EXPIRE of its own.
-- A stream lost on its own is created again with its TTL, never left without one.
-- Refuses (returns {}) when the session's state is gone, so a stream never outlives its state.
--
-- KEYS[1]  the session's conversation hash, KEYS[2] its event stream
-- ARGV[1]  TTL of a stream created again (seconds), ARGV[2] MAXLEN, ARGV[3] event type,
--          ARGV[4] data (JSON)
-- ARGV[5]  version to stamp on the event ("" for the state's current version)
-- ARGV[6]  the session id, ARGV[7] the notification stream's MAXLEN ("" on a cluster),
-- ARGV[8]  the most bytes of event data a notification carries
-- KEYS[3]  the session's notification stream: single node only (see write_state.lua)
--
-- Keeps the conversation hash's `last` (the stream's last entry id, see write_state.lua), so
-- the notification can carry the event for the readers whose cursor is at the entry before.
-- Returns {id} on a single node, {id, the notification's fields} on a cluster (the caller
-- sends it after the script: another slot).

local stored = redis.call('HMGET', KEYS[1], 'version', 'last')
local version = ARGV[5]
if version == '' then
  version = stored[1]
  if not version then
    return {}
  end
end
local prev = stored[2]
local id = redis.call('XADD', KEYS[2], 'NOMKSTREAM', 'MAXLEN', '~', ARGV[2], '*',
  'type', ARGV[3], 'version', version, 'data', ARGV[4])
if not id then
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
    'type', ARGV[3], 'version', version, 'data', ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
  prev = false  -- a stream created anew: `last` named an entry of the lost one
end
local note = {'s', ARGV[6]}
if stored[1] then  -- never creates a hash of its own
  redis.call('HSET', KEYS[1], 'last', id)
end
if prev and #ARGV[4] <= tonumber(ARGV[8]) then
  note[3], note[4] = 'p', prev
  note[5], note[6] = id, ARGV[3] .. '\n' .. version .. '\n' .. ARGV[4]
else
  note[3], note[4] = id, ''
end
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', unpack(note))
  return {id}
end
return {id, note}
