-- wrk script of `cargo xtask bench`: POSTs the JSON bodies in the file named by BENCH_BODY (one
-- per line, sent in turn; a file of one line sends the same body every time) and, when done,
-- prints one line `BENCH {json}` with throughput, latency percentiles (µs) and errors.
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODY")) do
  if line:match("%S") then
    bodies[#bodies + 1] = line
  end
end
assert(#bodies > 0, "BENCH_BODY holds no request body")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = bodies[1]

if #bodies > 1 then
  local next_body = 0
  request = function()
    next_body = next_body % #bodies + 1
    return wrk.format(nil, nil, nil, bodies[next_body])
  end
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors
  local failed = errors.connect + errors.read + errors.write + errors.status + errors.timeout
  io.write(string.format(
    'BENCH {"requests": %d, "seconds": %.3f, "requests_per_second": %.1f, ' ..
    '"p50_us": %d, "p99_us": %d, "p999_us": %d, "errors": %d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), failed))
end
