-- Release snapshotted sessions from the dirty set, atomically with the check that they did not
-- move on since their snapshot (single Redis node only: the set and the sessions' hashes live
-- in different slots; a cluster runs the ZREM, re-read and re-add of `DirtySet.release`).
--
-- A write skips its `ZADD NX` into the dirty set while the written hash holds `dirty` = 1
-- (write_state.lua): the session is in the set already. So a release clears that field in the
-- same step as it removes the member, and nothing can run in between.
--
-- KEYS[1] the dirty set; then per session i: KEYS[2i] its conversation hash, KEYS[2i + 1] its
-- orchestration hash. ARGV[1] now (the score of a session kept); then per session: ARGV[3i - 1]
-- its id, ARGV[3i] and ARGV[3i + 1] the conversation and orchestration versions its snapshot
-- read. Returns how many were kept (written since their snapshot).

local kept = 0
for i = 1, (#KEYS - 1) / 2 do
  local conv_key, orch_key = KEYS[2 * i], KEYS[2 * i + 1]
  local sid = ARGV[3 * i - 1]
  local conv = tonumber(redis.call('HGET', conv_key, 'version') or '0')
  local orch = tonumber(redis.call('HGET', orch_key, 'version') or '0')
  local moved = (conv > 0 or orch > 0)
    and (conv ~= tonumber(ARGV[3 * i]) or orch ~= tonumber(ARGV[3 * i + 1]))
  if moved then
    -- As the cluster path's ZREM + ZADD NX: it stays, as dirty from now on.
    redis.call('ZADD', KEYS[1], ARGV[1], sid)
    kept = kept + 1
  else
    redis.call('ZREM', KEYS[1], sid)
    redis.call('HDEL', conv_key, 'dirty')
    redis.call('HDEL', orch_key, 'dirty')
  end
end
return kept
