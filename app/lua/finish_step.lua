-- A step succeeded: store its output, hand off to what follows and settle its broker
-- message, in one round trip, atomically (a worker that dies before this ran has done
-- nothing: its message is redelivered; after, everything is done). An element of a map that
-- is the map's last to finish also finishes the map (its output is the list of the
-- elements' outputs); a step whose output a map maps over also expands that map; a part of
-- a chord that completes it publishes the chord's body. Uses expand_map.lua.
-- KEYS[1] job record   KEYS[2] job steps   KEYS[3] job data   KEYS[4] the worker's inflight hash
-- KEYS[5] deadlines   KEYS[6] kombu's unacked hash   KEYS[7] kombu's unacked index
-- KEYS[8] the chord's finished parts   KEYS[9] the chord's size   KEYS[10] the Redis commands
-- (JSON) that publish the chord's body (these three unused if the step is not a chord part)
-- KEYS[11 ..] the key of each hand-off command below, in order
-- ARGV[1] step   ARGV[2] now   ARGV[3] job id   ARGV[4] events channel
-- ARGV[5] output (wire text)   ARGV[6] flags: 's' a sink, 'w' its output is the whole
--         result, 'c' it counts in progress (a map counts once, when it succeeds; its
--         elements do not)   ARGV[7] broker delivery tag ('' if none)
-- ARGV[8] step event   ARGV[9] job-succeeded event
-- ARGV[10] map this step is an element of ('' if none)   ARGV[11] the map's flags
-- ARGV[12] the map's succeeded event
-- ARGV[13] map to expand over this output ('' if none)   ARGV[14] its expanded event
-- ARGV[15] that map's flags   ARGV[16] its succeeded event (it succeeds at once if empty)
-- ARGV[17] n elements   ARGV[18 .. 17+n] the elements (wire text)
-- ARGV[18+n] this step's task id if it is a part of a chord ('' if not)   ARGV[19+n] chord ttl
-- ARGV[20+n] the attempt this finish ends ('' for any): if a later attempt started (its
--            worker was counted dead and its message handed back), this one is fenced off
-- then the hand-off (the next messages) as Redis commands: how many, then per command its
-- argument count c, its name and c arguments; its key is the next KEYS entry. (The chord's
-- body, stored when the chord was published, names its queues itself.) Then, in the same
-- layout, commands to run whatever the job's state: the record of the batch the step ran
-- in (its fields in the steps hash, the batch's metrics event), in this round trip rather
-- than one of its own before the batch's hand-offs.
-- A HOLD command among them, {'HOLD', queue, message, delivery tag, unacked entry}, is a
-- message of an inline API: instead of its queue it goes to this worker, delivered (in
-- kombu's unacked hash and index, and the worker's inflight hash: a worker that dies with
-- it hands it back to its queue).
-- Returns {status, output spec or '', held message ...}: status 'ok', 'fenced' (changing
-- nothing) if a later attempt of the step started, 'done' (changing nothing) if the step
-- had succeeded already, 'ended' if the job is not running any more, 'succeeded' if this made the job succeed, or 'complete' (with
-- the output spec) when the job's last sink finished and its result must be assembled.
local job, steps, data, inflight, deadlines = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local s, now, id, channel, tag = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[7]
local n = tonumber(ARGV[17])

local attempt = ARGV[20 + n]
if attempt ~= '' and redis.call('HGET', steps, s .. '|attempts') ~= attempt then
  return {'fenced', ''}
end
-- sent again (the worker's client resends a script whose reply a broken connection lost):
-- the first one did it all
if redis.call('HGET', steps, s .. '|state') == 'succeeded' then return {'done', ''} end

local cursor, key = 21 + n, 11
local function commands()
  local count = tonumber(ARGV[cursor])
  cursor = cursor + 1
  local out = {}
  for _ = 1, count do
    local argc = tonumber(ARGV[cursor])
    local command = {ARGV[cursor + 1], KEYS[key]}
    for a = 1, argc do command[#command + 1] = ARGV[cursor + 1 + a] end
    out[#out + 1] = command
    cursor, key = cursor + 2 + argc, key + 1
  end
  return out
end
local handoff = commands()
local always = commands()

local held = {}
local function run(list)
  for i = 1, #list do
    local c = list[i]
    if c[1] == 'HOLD' then
      redis.call('HSET', KEYS[6], c[4], c[5])
      redis.call('ZADD', KEYS[7], now, c[4])
      redis.call('HSET', inflight, c[4], 'held')
      held[#held + 1] = c[3]
    else
      redis.call(unpack(c))
    end
  end
end

local function sink_finished(flags, value)
  if not string.find(flags, 's', 1, true) then return {'ok'} end
  local done = redis.call('HINCRBY', job, 'sinks_done', 1)
  if done < tonumber(redis.call('HGET', job, 'sinks')) then return {'ok'} end
  if string.find(flags, 'w', 1, true) then
    redis.call('HSET', job, 'state', 'succeeded', 'finished_at', now, 'result', value)
    redis.call('ZREM', deadlines, id)
    redis.call('PUBLISH', channel, ARGV[9])
    return {'succeeded'}
  end
  return {'complete', redis.call('HGET', job, 'output')}
end

for i = 1, #always do redis.call(unpack(always[i])) end
-- settle the message: kombu's ack of it then has nothing left to remove
if tag ~= '' then
  redis.call('HDEL', inflight, tag)
  redis.call('HDEL', KEYS[6], tag)
  redis.call('ZREM', KEYS[7], tag)
end
local state = redis.call('HGET', job, 'state')
if state ~= 'running' then
  -- it ran to its end after its job ended (a sibling failed, a cancel came too late)
  if state then redis.call('HSET', steps, s .. '|state', 'succeeded', s .. '|finished_at', now) end
  return {'ended'}
end
redis.call('HSET', data, 'o:' .. s, ARGV[5])
redis.call('HSET', steps, s .. '|state', 'succeeded', s .. '|finished_at', now)
if string.find(ARGV[6], 'c', 1, true) then redis.call('HINCRBY', job, 'done', 1) end
redis.call('PUBLISH', channel, ARGV[8])

local result = {'ok'}
local m = ARGV[13]
if m ~= '' then
  expand_map(job, steps, data, m, n, now, channel, ARGV[14], ARGV, 18)
  if n == 0 then
    redis.call('HSET', data, 'o:' .. m, '[]')
    redis.call('HSET', steps, m .. '|state', 'succeeded', m .. '|finished_at', now)
    redis.call('HINCRBY', job, 'done', 1)
    redis.call('PUBLISH', channel, ARGV[16])
    result = sink_finished(ARGV[15], '[]')
  end
end

local map = ARGV[10]
if map ~= '' then
  local done = redis.call('HINCRBY', steps, map .. '|done', 1)
  local size = tonumber(redis.call('HGET', steps, map .. '|size'))
  if done == size then
    local fields = {}
    for i = 1, size do fields[i] = 'o:' .. map .. '[' .. (i - 1) .. ']' end
    local list = '[' .. table.concat(redis.call('HMGET', data, unpack(fields)), ',') .. ']'
    redis.call('HSET', data, 'o:' .. map, list)
    redis.call('HSET', steps, map .. '|state', 'succeeded', map .. '|finished_at', now)
    redis.call('HINCRBY', job, 'done', 1)
    redis.call('PUBLISH', channel, ARGV[12])
    result = sink_finished(ARGV[11], list)
  end
else
  local own = sink_finished(ARGV[6], ARGV[5])
  if own[1] ~= 'ok' then result = own end
end

run(handoff)
local part = ARGV[18 + n]
if part ~= '' then
  -- a set, not a counter: a part is counted once however often it is delivered
  redis.call('SADD', KEYS[8], part)
  redis.call('EXPIRE', KEYS[8], ARGV[19 + n])
  local size = tonumber(redis.call('GET', KEYS[9]))
  if size ~= nil and redis.call('SCARD', KEYS[8]) >= size then
    local body = redis.call('GET', KEYS[10])
    redis.call('DEL', KEYS[8], KEYS[9], KEYS[10])
    if body then run(cjson.decode(body)) end
  end
end
return {result[1], result[2] or '', unpack(held)}
