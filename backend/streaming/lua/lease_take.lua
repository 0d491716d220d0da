-- Take a lease, or keep one already held with this token (a holder coming back after a Redis
-- outage it waited out): free -> taken, ours -> extended, someone else's -> refused.
-- KEYS[1] the lease; ARGV[1] token, ARGV[2] TTL (ms). Returns 1 when held, 0 otherwise.
-- SessionLease.take runs a plain SET NX GET first and this script only when that found the
-- caller's own token (a take-back); SET NX stays first here in case the lease lapsed since.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
