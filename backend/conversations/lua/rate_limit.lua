-- Fixed-window counter: count one hit and return it with the window's remaining time.
-- INCR and the expiry are one step, so a counter can never be left without a TTL.
--
-- KEYS[1]  the counter; ARGV[1] window length (ms)
-- Returns {hits in this window, ms until the window resets}.

local hits = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if hits == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {hits, ttl}
