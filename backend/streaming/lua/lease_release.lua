-- Compare-and-delete: release a lease only if the caller still holds it, never someone else's.
-- KEYS[1] the lease; ARGV[1] token. Returns 1 when released, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
