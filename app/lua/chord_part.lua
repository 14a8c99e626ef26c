-- A header task of a chord finished: count it (once, even if redelivered) and say whether
-- it was the last, in which case the caller publishes the chord's body.
-- KEYS[1] the chord's set of finished parts   KEYS[2] the chord's size (set when published)
-- ARGV[1] task id   ARGV[2] ttl (s)
-- Returns 1 for the part that completes the chord (then both keys are gone), else 0.
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if added == 0 then return 0 end
local size = tonumber(redis.call('GET', KEYS[2]))
if size == nil or redis.call('SCARD', KEYS[1]) < size then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
