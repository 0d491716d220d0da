-- Fixed-window counter: count one hit and return it with the window's remaining time.
-- INCR and the expiry are one step, so a counter can never be left without a TTL.
--
-- KEYS[1]  the counter; ARGV[1] window length (ms), ARGV[2] the limit
-- Returns {hits in this window, ms until the window resets}; the remaining time is looked up
-- only past the limit (for Retry-After), and reported as 0 below it.

local hits = redis.call('INCR', KEYS[1])
if hits == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return {hits, tonumber(ARGV[1])}
end
if hits <= tonumber(ARGV[2]) then
  return {hits, 0}
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then  -- a counter that lost its TTL (never set by this script): give it one
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {hits, ttl}
