-- POST pre-signed Twilio webhooks, each line of the pool file once.
--
--   wrk -t1 -c N -d 5s -s bench/wrk_post.lua http://127.0.0.1:PORT/twilio/sms -- POOL
--
-- POOL holds one request per line: "<X-Twilio-Signature>\t<form body>"
-- (bench/webhooks.py writes it; signatures need HMAC-SHA1, made in Python).
-- A run that needs more lines than the pool holds posts to
-- /bench-pool-exhausted instead, which every server answers 404: the
-- summary's "status" errors and "exhausted" count show it.
-- Use one wrk thread (-t1): each thread would read the whole pool.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  sigs, bodies = {}, {}
  for line in io.lines(args[1]) do
    local tab = line:find("\t", 1, true)
    sigs[#sigs + 1] = line:sub(1, tab - 1)
    bodies[#bodies + 1] = line:sub(tab + 1)
  end
  used, exhausted = 0, 0
  headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
end

function request()
  used = used + 1
  if used > #bodies then
    exhausted = exhausted + 1
    return wrk.format("POST", "/bench-pool-exhausted", headers, "")
  end
  headers["X-Twilio-Signature"] = sigs[used]
  return wrk.format("POST", wrk.path, headers, bodies[used])
end

function done(summary, latency, requests)
  local used_total, exhausted_total = 0, 0
  for _, thread in ipairs(threads) do
    used_total = used_total + thread:get("used")
    exhausted_total = exhausted_total + thread:get("exhausted")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"min": %d, "mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}, '
      .. '"pool_used": %d, "exhausted": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, used_total, exhausted_total))
end
