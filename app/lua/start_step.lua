-- A worker starts a step: mark it running, note its broker message as in flight on this
-- worker, and read its inputs, in one round trip.
-- KEYS[1] job record   KEYS[2] job steps   KEYS[3] job data   KEYS[4] the worker's inflight hash
-- ARGV[1] step   ARGV[2] task id   ARGV[3] worker node   ARGV[4] now
-- ARGV[5] events channel   ARGV[6] step event   ARGV[7] job-running event
-- ARGV[8] broker delivery tag   ARGV[9] inflight ttl (s)
-- ARGV[10] n: how many steps-hash timestamps follow, the latest of which is when the step
--          became ready (the job's creation if none)
-- ARGV[11 .. 10+n] those timestamps' fields   ARGV[11+n ..] the data fields to read
-- Returns {'run', attempts, ready_at, values...}, {'done'} if the step already succeeded,
-- or {job state} ('missing' for an expired job) if the job is not running any more.
local job, steps, data, inflight = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local s, now, channel = ARGV[1], ARGV[4], ARGV[5]
local nready = tonumber(ARGV[10])
local state = redis.call('HGET', job, 'state')
if state ~= 'queued' and state ~= 'running' then return {state or 'missing'} end
if redis.call('HGET', steps, s .. '|state') == 'succeeded' then return {'done'} end
if state == 'queued' then
  redis.call('HSET', job, 'state', 'running', 'started_at', now)
  redis.call('PUBLISH', channel, ARGV[7])
end
local attempts = redis.call('HINCRBY', steps, s .. '|attempts', 1)
local ready = redis.call('HGET', job, 'created_at')
for i = 1, nready do
  local t = redis.call('HGET', steps, ARGV[10 + i])
  if t and tonumber(t) > tonumber(ready) then ready = t end
end
redis.call('HSET', steps, s .. '|state', 'running', s .. '|task_id', ARGV[2],
           s .. '|worker', ARGV[3], s .. '|started_at', now, s .. '|queued_at', ready)
if ARGV[8] ~= '' then
  redis.call('HSET', inflight, ARGV[8], s)
  redis.call('EXPIRE', inflight, ARGV[9])
end
redis.call('PUBLISH', channel, ARGV[6])
local out = {'run', attempts, ready}
if #ARGV > 10 + nready then
  local vals = redis.call('HMGET', data, unpack(ARGV, 11 + nready))
  for i = 1, #vals do table.insert(out, vals[i]) end
end
return out
