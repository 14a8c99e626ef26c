-- The API accepts a job: its record, steps and inputs, its place in the jobs list and the
-- deadlines, its blobs, and the commands that publish its first messages, atomically (a job
-- is never half published). A create that was sent again (a client library's retry after a
-- lost reply) finds the job and changes nothing, so no message is published twice. With an
-- idempotency key, a key seen before answers with the job it made instead.
-- KEYS[1] job record   KEYS[2] job steps   KEYS[3] job data   KEYS[4] jobs list
-- KEYS[5] deadlines   KEYS[6] the idempotency key's record (unused without one)
-- KEYS[7] the job's pipeline's jobs list
-- KEYS[8 ..] each queue the job needs, then the key of each blob, then of each command
-- below, in order
-- ARGV[1] job id   ARGV[2] now   ARGV[3] deadline   ARGV[4] ttl (s)
-- ARGV[5] the idempotency record to store ('' without a key)
-- ARGV[6] q: how many queues the job needs (KEYS[8 .. 7+q]); ARGV[7 .. 6+q] how many
-- messages may wait in each
-- then n: how many job-record fields follow (name, value pairs), then m: how many step
-- fields, then d: how many data fields, then b: how many blobs (their texts, in KEYS order)
-- then the commands: how many, then per command its argument count c, its name and c
-- arguments; its key is the next KEYS entry
-- Returns {'created'}, {'exists'} (sent again), {'seen', the idempotency record}, or
-- {'full', queue, messages waiting} (nothing written) when a queue it needs is full.
local job, steps, data = KEYS[1], KEYS[2], KEYS[3]
local id, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[4])
if redis.call('EXISTS', job) == 1 then return {'exists'} end
if ARGV[5] ~= '' then
  local seen = redis.call('GET', KEYS[6])
  if seen then return {'seen', seen} end
end
local queues = tonumber(ARGV[6])
for i = 1, queues do
  local waiting = redis.call('LLEN', KEYS[7 + i])
  if waiting >= tonumber(ARGV[6 + i]) then return {'full', KEYS[7 + i], waiting} end
end
if ARGV[5] ~= '' then redis.call('SET', KEYS[6], ARGV[5], 'EX', ttl) end
local cursor, key = 7 + queues, 8 + queues
local function fields(target)
  local count = tonumber(ARGV[cursor])
  if count > 0 then
    redis.call('HSET', target, unpack(ARGV, cursor + 1, cursor + 2 * count))
    redis.call('EXPIRE', target, ttl)
  end
  cursor = cursor + 1 + 2 * count
end
fields(job)
fields(steps)
fields(data)
local blobs = tonumber(ARGV[cursor])
for i = 1, blobs do
  redis.call('SET', KEYS[key], ARGV[cursor + i], 'EX', ttl)
  key = key + 1
end
cursor = cursor + 1 + blobs
redis.call('ZADD', KEYS[4], now, id)
redis.call('ZADD', KEYS[7], now, id)
redis.call('ZADD', KEYS[5], ARGV[3], id)
local count = tonumber(ARGV[cursor])
cursor = cursor + 1
for _ = 1, count do
  local argc = tonumber(ARGV[cursor])
  local command = {ARGV[cursor + 1], KEYS[key]}
  for a = 1, argc do command[#command + 1] = ARGV[cursor + 1 + a] end
  redis.call(unpack(command))
  cursor, key = cursor + 2 + argc, key + 1
end
return {'created'}
