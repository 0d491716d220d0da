-- Evict one session's hot keys, but only if nothing changed since the caller checked it.
--
-- KEYS[1] conversation hash, KEYS[2] orchestration hash, KEYS[3] event stream, KEYS[4] lease
-- ARGV[1] conversation version the caller read ("0" when absent), ARGV[2] orchestration's
-- KEYS[5], ARGV[3], ARGV[4] (single node only): the session's notification partition stream,
--   the session id and the stream's MAXLEN: a `gone` notification follows the DEL, so the
--   replicas end the session's open streams at once (state/notify.py). On a cluster the
--   partition is in another slot and the caller sends it after this script.
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
local deleted = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if KEYS[5] then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[4], '*', 's', ARGV[3], 'gone', '1')
end
return deleted
