-- Write to a streaming step's stream: a chunk, its end, or nothing (to read the lead alone).
-- KEYS[1] the stream   KEYS[2] its state hash   KEYS[3] the job's record
-- ARGV[1] the writer's attempt ('0': a new writer: it takes the next attempt)
-- ARGV[2] entries kept (MAXLEN ~)   ARGV[3] TTL (s)   ARGV[4] index of the entry's first item
-- ARGV[5] the items (a JSON list; '' for none)   ARGV[6] the end ('', 'ok' or 'failed')
-- ARGV[7] the end's message   ARGV[8..] the cursor fields of the steps that read it
-- A write whose first item's index is not past the last entry's of its attempt (field
-- 'last') was written already (sent again after its reply was lost): it adds no entry.
-- Returns {status, attempt, lowest}: status 'ok'; 'fenced' if a later attempt writes it now
-- (this writer must stop); or the job's state if it ended ('failed', 'cancelled', ...).
-- lowest: how many items of this attempt the slowest reading step read (a cursor is
-- '<attempt> <items read>'; a step that has not read this attempt yet counts 0), or -1
-- when no step reads it.
local attempt = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[2], 'attempt') or '0')
if attempt == 0 then
  attempt = redis.call('HINCRBY', KEYS[2], 'attempt', 1)
  redis.call('HSET', KEYS[2], 'last', -1)
elseif current > attempt then
  return {'fenced', attempt, 0}
end
local state = redis.call('HGET', KEYS[3], 'state')
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then
  return {state, attempt, 0}
end
local again = tonumber(ARGV[4]) <= tonumber(redis.call('HGET', KEYS[2], 'last') or '-1')
if (ARGV[5] ~= '' or ARGV[6] ~= '') and not again then
  redis.call('HSET', KEYS[2], 'last', ARGV[4])
  local fields = {'a', attempt, 'n', ARGV[4]}
  if ARGV[5] ~= '' then
    table.insert(fields, 'd')
    table.insert(fields, ARGV[5])
  end
  if ARGV[6] ~= '' then
    table.insert(fields, 'e')
    table.insert(fields, ARGV[6])
    table.insert(fields, 'm')
    table.insert(fields, ARGV[7])
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
local lowest = -1
for i = 8, #ARGV do
  local read = 0
  local cursor = redis.call('HGET', KEYS[2], ARGV[i])
  if cursor then
    local a, n = string.match(cursor, '^(%d+) (%d+)$')
    if tonumber(a) == attempt then read = tonumber(n) end
  end
  if lowest < 0 or read < lowest then lowest = read end
end
return {'ok', attempt, lowest}
