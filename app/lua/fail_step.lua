-- A step failed (or was cancelled while it ran): record it and end the job; uses end_job.lua.
-- KEYS[1] job record   KEYS[2] job steps   KEYS[3] deadlines   KEYS[4] the worker's inflight hash
-- ARGV[1] step   ARGV[2] now   ARGV[3] job id   ARGV[4] the step's state ('failed' or
-- 'cancelled')   ARGV[5] step error (JSON)   ARGV[6] job error (JSON)   ARGV[7] events channel
-- ARGV[8] step event   ARGV[9] the job's final event   ARGV[10] broker delivery tag ('' if none)
-- ARGV[11] the attempt that failed ('' for any): if a later attempt started, this one is
--          fenced off
-- Returns {'fenced'} (changing nothing) if a later attempt of the step started,
-- {'cancelled'} for a cancelled step, else what end_job returns.
local job, steps = KEYS[1], KEYS[2]
local s, now = ARGV[1], ARGV[2]
if ARGV[11] ~= '' and redis.call('HGET', steps, s .. '|attempts') ~= ARGV[11] then
  return {'fenced'}
end
if ARGV[10] ~= '' then redis.call('HDEL', KEYS[4], ARGV[10]) end
redis.call('HSET', steps, s .. '|state', ARGV[4], s .. '|finished_at', now, s .. '|error', ARGV[5])
redis.call('PUBLISH', ARGV[7], ARGV[8])
if ARGV[4] == 'cancelled' then return {'cancelled'} end
return end_job(job, steps, KEYS[3], ARGV[3], now, 'failed', ARGV[6], ARGV[7], ARGV[9])
