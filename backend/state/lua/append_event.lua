-- Append one event to a session's stream, which keeps the TTL the session's state writes
-- give it (write_state.lua slides it with the state's): a delta costs no EXPIRE of its own.
-- A stream lost on its own is created again with its TTL, never left without one.
-- Refuses (returns "") when the session's state is gone, so a stream never outlives its state.
--
-- KEYS[1]  the session's conversation hash, KEYS[2] its event stream
-- ARGV[1]  TTL of a stream created again (seconds), ARGV[2] MAXLEN, ARGV[3] event type,
--          ARGV[4] data (JSON)
-- ARGV[5]  version to stamp on the event ("" for the state's current version)
-- KEYS[3]  the session's notification stream, ARGV[6] the session id, ARGV[7] its MAXLEN:
--          single node only (see write_state.lua, KEYS[9])

local version = ARGV[5]
if version == '' then
  version = redis.call('HGET', KEYS[1], 'version')
  if not version then
    return ''
  end
end
local id = redis.call('XADD', KEYS[2], 'NOMKSTREAM', 'MAXLEN', '~', ARGV[2], '*',
  'type', ARGV[3], 'version', version, 'data', ARGV[4])
if not id then
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
    'type', ARGV[3], 'version', version, 'data', ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
if KEYS[3] then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 's', ARGV[6])
end
return id
