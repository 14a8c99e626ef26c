-- Hand back at once the broker messages a dead worker was running: each one still unacked
-- goes back to the front of its queue (the next one a worker takes), as kombu's restore
-- would put it there after the visibility timeout, and leaves kombu's unacked bookkeeping.
-- A message that another worker's restore handed back already (no longer unacked) is left
-- alone, so none is queued twice.
-- KEYS[1] the dead worker's inflight hash   KEYS[2] kombu's unacked hash
-- KEYS[3] kombu's unacked index   KEYS[4 ..] the queue of each message below, in order
-- ARGV[1], ARGV[2], ...: per message, its delivery tag and its text (marked redelivered)
-- Returns how many of its messages were still unacked.
local n = 0
for i = 1, #ARGV, 2 do
  local tag = ARGV[i]
  if redis.call('HDEL', KEYS[2], tag) == 1 then
    redis.call('ZREM', KEYS[3], tag)
    redis.call('RPUSH', KEYS[4 + (i - 1) / 2], ARGV[i + 1])
    n = n + 1
  end
end
redis.call('DEL', KEYS[1])
return n
