-- Raise a session's durable_seq (the highest message sequence PostgreSQL holds).
-- KEYS[1] the conversation hash; ARGV[1] the sequence. No-op when the hash is gone or the
-- stored value is already as high; never changes the version or the TTL.
-- One read: a hash that exists always has its `version` (write_state.lua writes it).
local stored = redis.call('HMGET', KEYS[1], 'version', 'durable_seq')
if not stored[1] then
  return 0
end
if tonumber(ARGV[1]) > tonumber(stored[2] or '0') then
  redis.call('HSET', KEYS[1], 'durable_seq', ARGV[1])
  return 1
end
return 0
