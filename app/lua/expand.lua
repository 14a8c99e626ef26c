-- A map step expands over a list it read (when no step before it in its chain produced the
-- list, so nobody expanded it on finishing); uses expand_map.lua.
-- KEYS[1] job record   KEYS[2] job steps   KEYS[3] job data
-- ARGV[1] map step   ARGV[2] now   ARGV[3] events channel   ARGV[4] expanded event
-- ARGV[5] n elements   ARGV[6 .. 5+n] the elements (wire text)
-- Returns 1, or 0 if the job is not running any more.
local job, steps, data = KEYS[1], KEYS[2], KEYS[3]
local m, now, n = ARGV[1], ARGV[2], tonumber(ARGV[5])
if redis.call('HGET', job, 'state') ~= 'running' then return 0 end
expand_map(job, steps, data, m, n, now, ARGV[3], ARGV[4], ARGV, 6)
return 1
