-- A header task of a chord finished: count it (once, even if redelivered); the part that
-- completes the chord publishes its body (stored when the chord was published).
-- KEYS[1] the chord's set of finished parts   KEYS[2] the chord's size (set when published)
-- KEYS[3] the Redis commands (JSON) that publish the chord's body
-- ARGV[1] task id   ARGV[2] ttl (s)
-- Returns 1 for the part that completes the chord (then its keys are gone), else 0.
-- A HOLD command (a message held for the worker of a step's finish) is pushed as usual.
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if added == 0 then return 0 end
local size = tonumber(redis.call('GET', KEYS[2]))
if size == nil or redis.call('SCARD', KEYS[1]) < size then return 0 end
local body = redis.call('GET', KEYS[3])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if body then
  local commands = cjson.decode(body)
  for i = 1, #commands do
    local c = commands[i]
    if c[1] == 'HOLD' then redis.call('LPUSH', c[2], c[3]) else redis.call(unpack(c)) end
  end
end
return 1
