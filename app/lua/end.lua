-- The API ends a job (cancelled, or failed past its deadline); uses end_job.lua.
-- KEYS[1] job record   KEYS[2] job steps   KEYS[3] deadlines
-- ARGV[1] job id   ARGV[2] now   ARGV[3] state   ARGV[4] error (JSON)   ARGV[5] events channel
-- ARGV[6] the job's final event
return end_job(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
