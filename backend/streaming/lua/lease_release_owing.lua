-- Release a lease (compare-and-delete, as lease_release.lua) and say in the same step whether
-- the session owes a reply: its holder's last look before it lets go. A message stored before
-- the release is seen here; one stored after finds the lease free and starts its own reply.
-- KEYS[1] the lease, KEYS[2] the session's conversation hash (same hash tag); ARGV[1] token.
-- Returns the conversation's meta (JSON, with `owes_reply`), or false when it is gone.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return redis.call('HGET', KEYS[2], 'meta')
