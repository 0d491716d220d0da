-- Extend a lease only while the caller still holds it (its token is the value).
-- KEYS[1] the lease; ARGV[1] token, ARGV[2] TTL (ms). Returns 1 when renewed, 0 when lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
