-- Evict one session's hot keys, but only if nothing changed since the caller checked it.
--
-- KEYS[1] conversation hash, KEYS[2] orchestration hash, KEYS[3] event stream, KEYS[4] lease
-- ARGV[1] conversation version the caller read ("0" when absent), ARGV[2] orchestration's
--
-- The caller read both versions, then saw the session outside the dirty set (snapshotted).
-- The dirty set lives in another slot, so that check cannot be in this script; instead any
-- write since the read shows up here as a changed version, and the eviction is refused.
-- Returns -1 when a reply is being generated (lease held), 0 when a version changed, else
-- the number of keys deleted.

if redis.call('EXISTS', KEYS[4]) == 1 then
  return -1
end
local conv = redis.call('HGET', KEYS[1], 'version') or '0'
local orch = redis.call('HGET', KEYS[2], 'version') or '0'
if conv ~= ARGV[1] or orch ~= ARGV[2] then
  return 0
end
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
