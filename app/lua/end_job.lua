-- end_job(job, steps, deadlines, id, now, state, error, channel, event): end a job that is
-- not final yet, and give the task ids of its running steps (to interrupt them). Its steps
-- that never started (queued, or waiting to retry) end too: 'cancelled' with a cancelled
-- job, else 'skipped'.
-- Returns {'ended', task ids...} or {the job's final state} ('missing' if it expired).
local function end_job(job, steps, deadlines, id, now, state, err, channel, ev)
  local current = redis.call('HGET', job, 'state')
  if current ~= 'queued' and current ~= 'running' then return {current or 'missing'} end
  redis.call('HSET', job, 'state', state, 'finished_at', now, 'error', err)
  redis.call('ZREM', deadlines, id)
  redis.call('PUBLISH', channel, ev)
  local out = {'ended'}
  local left = state == 'cancelled' and 'cancelled' or 'skipped'
  local fields = redis.call('HGETALL', steps)
  for i = 1, #fields, 2 do
    local f, v = fields[i], fields[i + 1]
    if string.sub(f, -6) == '|state' then
      if v == 'running' then
        local task = redis.call('HGET', steps, string.sub(f, 1, -7) .. '|task_id')
        if task then table.insert(out, task) end
      elseif v == 'queued' or v == 'retrying' then
        redis.call('HSET', steps, f, left)
      end
    end
  end
  return out
end
