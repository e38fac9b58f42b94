-- wrk script: POST /asap with a fresh envelope id and timestamp on every request,
-- the same body shape for every server under test.
local counter = 0
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function init(args)
  counter = 0
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  counter = counter + 1
  local now = os.time()
  local ts = os.date("!%Y-%m-%dT%H:%M:%S", now) .. string.format(".%06dZ", counter % 1000000)
  local id = string.format("01BENCH%02d%017d", (tid or 0) % 100, counter)
  local body = '{"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": {"id": "' .. id ..
    '", "asap_version": "0.1", "timestamp": "' .. ts ..
    '", "sender": "urn:asap:agent:bench-client", "recipient": "urn:asap:agent:echo-agent", "payload_type": "task.request", ' ..
    '"payload": {"conversation_id": "conv_bench", "skill_id": "echo", "input": {"message": "hello", "n": ' .. counter .. '}}}}, "id": "req-' .. counter .. '"}'
  return wrk.format(nil, "/asap", nil, body)
end

done = function(summary, latency, requests)
  io.write(string.format("BENCH rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d non2xx_or_error_bodies=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, summary.errors.status))
end
