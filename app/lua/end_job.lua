-- end_job(job, steps, deadlines, id, now, state, error, channel, event): end a job that is
-- not final yet, and give the task ids of its running steps (to interrupt them).
-- Returns {'ended', task ids...} or {the job's final state} ('missing' if it expired).
local function end_job(job, steps, deadlines, id, now, state, err, channel, ev)
  local current = redis.call('HGET', job, 'state')
  if current ~= 'queued' and current ~= 'running' then return {current or 'missing'} end
  redis.call('HSET', job, 'state', state, 'finished_at', now, 'error', err)
  redis.call('ZREM', deadlines, id)
  redis.call('PUBLISH', channel, ev)
  local out = {'ended'}
  local fields = redis.call('HGETALL', steps)
  for i = 1, #fields, 2 do
    local f = fields[i]
    if string.sub(f, -6) == '|state' and fields[i + 1] == 'running' then
      local task = redis.call('HGET', steps, string.sub(f, 1, -7) .. '|task_id')
      if task then table.insert(out, task) end
    end
  end
  return out
end
