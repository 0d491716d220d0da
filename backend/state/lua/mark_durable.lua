-- Raise a session's durable_seq (the highest message sequence PostgreSQL holds).
-- KEYS[1] the conversation hash; ARGV[1] the sequence. No-op when the hash is gone or the
-- stored value is already as high; never changes the version or the TTL.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local current = tonumber(redis.call('HGET', KEYS[1], 'durable_seq') or '0')
if tonumber(ARGV[1]) > current then
  redis.call('HSET', KEYS[1], 'durable_seq', ARGV[1])
  return 1
end
return 0
