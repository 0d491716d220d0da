-- Record a session in a user's index (a sorted set scored by last update,
-- in microseconds: exact in a double, and fine enough to order sessions created back to back), drop
-- entries older than the TTL (their state has expired for sure) and slide the index TTL.
--
-- KEYS[1]  the user's index; ARGV[1] session id, ARGV[2] score (us), ARGV[3] TTL (seconds)

redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[3]) * 1000000))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
