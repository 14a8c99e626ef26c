-- A map step expands over a list it read (when no step before it in its chain produced the
-- list, so nobody expanded it on finishing).
-- KEYS[1] job record   KEYS[2] job steps   KEYS[3] job data
-- ARGV[1] map step   ARGV[2] now   ARGV[3] events channel   ARGV[4] expanded event
-- ARGV[5] n elements   ARGV[6 .. 5+n] the elements (wire text)
-- Returns 1, or 0 if the job is not running any more.
local job, steps, data = KEYS[1], KEYS[2], KEYS[3]
local m, now, n = ARGV[1], ARGV[2], tonumber(ARGV[5])
if redis.call('HGET', job, 'state') ~= 'running' then return 0 end
redis.call('HSET', steps, m .. '|size', n, m .. '|state', 'running', m .. '|started_at', now)
redis.call('HINCRBY', job, 'total', n)
for i = 1, n do
  local e = m .. '[' .. (i - 1) .. ']'
  redis.call('HSET', data, 'm:' .. m .. ':' .. (i - 1), ARGV[5 + i])
  redis.call('HSET', steps, e .. '|state', 'queued', e .. '|queued_at', now)
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
