-- GCRA (generic cell rate algorithm) for every rate-limit rule of one client, evaluated
-- atomically on the Redis server, on the server's clock (one clock for every replica).
-- The same algorithm and parameters as the in-process limiter (governor).
--
-- KEYS[i]      the client's bucket for rule i: its theoretical arrival time (TAT), in
--              microseconds since the epoch
-- ARGV[2i-1]   rule i's emission interval T = window / count, in microseconds
-- ARGV[2i]     rule i's burst tolerance tau = T * (count - 1), in microseconds
-- ARGV[2n+1]   the cells to take at once, n being the number of rules (absent: 1; a
--              JSON-RPC batch takes one per member)
--
-- Rules are taken in order, each consuming the cells when it admits them all (a refusal
-- by a later rule still counts against the earlier ones, as in-process).
-- Returns {0, 0} when every rule admits the request, else {i, wait}: the first rule that
-- refuses it and the microseconds until it would admit the cells.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local cells = tonumber(ARGV[2 * #KEYS + 1]) or 1
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then
    tat = now
  end
  local earliest = tat + (cells - 1) * interval - tolerance
  if now < earliest then
    return {i, math.ceil(earliest - now)}
  end
  local next_tat = tat + cells * interval
  -- The bucket is full again (and forgotten) once the TAT has passed.
  redis.call('SET', key, string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
end
return {0, 0}
