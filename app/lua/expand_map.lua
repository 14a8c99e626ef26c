-- expand_map(job, steps, data, m, n, now, channel, event, args, first): record map m's size and
-- its n elements, args[first .. first+n-1] (wire text), each element step queued, and publish
-- the map's expanded event.
local function expand_map(job, steps, data, m, n, now, channel, ev, args, first)
  redis.call('HSET', steps, m .. '|size', n, m .. '|state', 'running', m .. '|started_at', now)
  for i = 1, n do
    local e = m .. '[' .. (i - 1) .. ']'
    redis.call('HSET', data, 'm:' .. m .. ':' .. (i - 1), args[first + i - 1])
    redis.call('HSET', steps, e .. '|state', 'queued', e .. '|queued_at', now)
  end
  redis.call('PUBLISH', channel, ev)
end
