-- Record a session in a user's index (a sorted set scored by the session's last write by its
-- user, in microseconds: exact in a double, and fine enough to order sessions created back to
-- back; the reply runner's writes leave the index alone) and slide the index TTL. For a new
-- session (ARGV[4] = "1", the only thing that grows the index) also drop the entries older
-- than the TTL: their state has expired, or expires within the time their last reply took
-- (which slid the session's keys, not the index); PostgreSQL's listing still has them.
--
-- KEYS[1]  the user's index; ARGV[1] session id, ARGV[2] score (us), ARGV[3] TTL (seconds),
-- ARGV[4]  "1" to prune

redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if ARGV[4] == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[3]) * 1000000))
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
