-- Take or keep the beat lock. KEYS[1] the lock; ARGV[1] this beat's token, ARGV[2] TTL (ms).
-- Returns 1 when the caller holds it (renewed or just taken), 0 when another beat does.
-- Renewing is GET + PEXPIRE only: neither needs memory, so a full Redis (noeviction) still
-- lets the holder keep its lock.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
