-- The job's result was assembled from its sinks: the job succeeded.
-- KEYS[1] job record   KEYS[2] deadlines
-- ARGV[1] job id   ARGV[2] now   ARGV[3] result (wire text)   ARGV[4] events channel
-- ARGV[5] the job's final event
-- Returns 1, or 0 if the job was not running any more.
local job = KEYS[1]
if redis.call('HGET', job, 'state') ~= 'running' then return 0 end
redis.call('HSET', job, 'state', 'succeeded', 'finished_at', ARGV[2], 'result', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
