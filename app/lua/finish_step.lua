-- A step succeeded: store its output and hand off, in one round trip. An element of a map
-- that is the map's last to finish also finishes the map (its output is the list of the
-- elements' outputs); a step whose output a map maps over also expands that map.
-- KEYS[1] job record   KEYS[2] job steps   KEYS[3] job data   KEYS[4] the worker's inflight hash
-- KEYS[5] deadlines
-- ARGV[1] step   ARGV[2] now   ARGV[3] job id   ARGV[4] events channel
-- ARGV[5] output (wire text)   ARGV[6] flags: 's' a sink, 'w' its output is the whole
--         result, 'c' it counts in progress   ARGV[7] broker delivery tag ('' if none)
-- ARGV[8] step event   ARGV[9] job-succeeded event
-- ARGV[10] map this step is an element of ('' if none)   ARGV[11] the map's flags
-- ARGV[12] the map's succeeded event
-- ARGV[13] map to expand over this output ('' if none)   ARGV[14] its expanded event
-- ARGV[15] that map's flags   ARGV[16] its succeeded event (it succeeds at once if empty)
-- ARGV[17] n elements   ARGV[18 .. 17+n] the elements (wire text)
-- Returns {'ok'}, {'ended'} if the job is not running any more, {'succeeded'} if this
-- made the job succeed, or {'complete', output spec} when the job's last sink finished and
-- its result must be assembled.
local job, steps, data, inflight, deadlines = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local s, now, id, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local function sink_finished(flags, value)
  if not string.find(flags, 's', 1, true) then return {'ok'} end
  local n = redis.call('HINCRBY', job, 'sinks_done', 1)
  if n < tonumber(redis.call('HGET', job, 'sinks')) then return {'ok'} end
  if string.find(flags, 'w', 1, true) then
    redis.call('HSET', job, 'state', 'succeeded', 'finished_at', now, 'result', value)
    redis.call('ZREM', deadlines, id)
    redis.call('PUBLISH', channel, ARGV[9])
    return {'succeeded'}
  end
  return {'complete', redis.call('HGET', job, 'output')}
end

if ARGV[7] ~= '' then redis.call('HDEL', inflight, ARGV[7]) end
if redis.call('HGET', job, 'state') ~= 'running' then return {'ended'} end
redis.call('HSET', data, 'o:' .. s, ARGV[5])
redis.call('HSET', steps, s .. '|state', 'succeeded', s .. '|finished_at', now)
if string.find(ARGV[6], 'c', 1, true) then redis.call('HINCRBY', job, 'done', 1) end
redis.call('PUBLISH', channel, ARGV[8])

local expanded = {'ok'}
local m = ARGV[13]
if m ~= '' then
  local n = tonumber(ARGV[17])
  redis.call('HSET', steps, m .. '|size', n, m .. '|state', 'running', m .. '|started_at', now)
  redis.call('HINCRBY', job, 'total', n)
  for i = 1, n do
    local e = m .. '[' .. (i - 1) .. ']'
    redis.call('HSET', data, 'm:' .. m .. ':' .. (i - 1), ARGV[17 + i])
    redis.call('HSET', steps, e .. '|state', 'queued', e .. '|queued_at', now)
  end
  redis.call('PUBLISH', channel, ARGV[14])
  if n == 0 then
    redis.call('HSET', data, 'o:' .. m, '[]')
    redis.call('HSET', steps, m .. '|state', 'succeeded', m .. '|finished_at', now)
    redis.call('PUBLISH', channel, ARGV[16])
    expanded = sink_finished(ARGV[15], '[]')
  end
end

local map = ARGV[10]
if map ~= '' then
  local done = redis.call('HINCRBY', steps, map .. '|done', 1)
  local size = tonumber(redis.call('HGET', steps, map .. '|size'))
  if done < size then return {'ok'} end
  local fields = {}
  for i = 1, size do fields[i] = 'o:' .. map .. '[' .. (i - 1) .. ']' end
  local list = '[' .. table.concat(redis.call('HMGET', data, unpack(fields)), ',') .. ']'
  redis.call('HSET', data, 'o:' .. map, list)
  redis.call('HSET', steps, map .. '|state', 'succeeded', map .. '|finished_at', now)
  redis.call('PUBLISH', channel, ARGV[12])
  return sink_finished(ARGV[11], list)
end
local own = sink_finished(ARGV[6], ARGV[5])
if own[1] ~= 'ok' then return own end
return expanded
