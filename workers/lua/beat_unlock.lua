-- Release the beat lock only if the caller still holds it (compare-and-delete), so a beat
-- whose lock already expired and was taken over never deletes its successor's.
-- KEYS[1] the lock; ARGV[1] this beat's token. Returns 1 when released.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
