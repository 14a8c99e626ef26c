-- Hand back at once the broker messages a dead worker was running: kombu's next restore
-- sweep (every restore interval, in any live worker) requeues the messages whose time in
-- its unacked index is past the visibility timeout, so move them to time 0.
-- KEYS[1] the dead worker's inflight hash   KEYS[2] kombu's unacked index (sorted set)
-- Returns how many of its messages were still unacked.
local tags = redis.call('HKEYS', KEYS[1])
local n = 0
for i = 1, #tags do
  n = n + redis.call('ZADD', KEYS[2], 'XX', 'CH', 0, tags[i])
end
redis.call('DEL', KEYS[1])
return n
