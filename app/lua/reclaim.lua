-- Hand back at once the broker messages a dead worker held: each one still unacked (noted in
-- its inflight hash) goes back to the front of its queue (the next one a worker takes), as
-- kombu's restore would put it there after the visibility timeout, and leaves kombu's unacked
-- bookkeeping; so does each message it took off its queue and never noted as delivered (its
-- reserved list). A message that another worker's restore handed back already (no longer
-- unacked) is left alone, so none is queued twice.
-- KEYS[1] the dead worker's inflight hash   KEYS[2] kombu's unacked hash
-- KEYS[3] kombu's unacked index   KEYS[4] the dead worker's reserved list
-- KEYS[5] the queue it consumed   KEYS[6 ..] the queue of each unacked message below
-- ARGV[1] m: how many unacked messages follow   ARGV[2], ARGV[3], ...: per unacked message,
-- its delivery tag and its text (marked redelivered); then each reserved message, as taken
-- Returns how many messages it handed back.
local m = tonumber(ARGV[1])
local n = 0
for i = 1, m do
  local tag = ARGV[2 * i]
  if redis.call('HDEL', KEYS[2], tag) == 1 then
    redis.call('ZREM', KEYS[3], tag)
    redis.call('RPUSH', KEYS[5 + i], ARGV[2 * i + 1])
    n = n + 1
  end
end
for i = 2 * m + 2, #ARGV do
  if redis.call('LREM', KEYS[4], 1, ARGV[i]) == 1 then
    redis.call('RPUSH', KEYS[5], ARGV[i])
    n = n + 1
  end
end
redis.call('DEL', KEYS[1])
return n
