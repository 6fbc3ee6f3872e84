-- wrk script of `cargo xtask bench`: POSTs the JSON body in the file named by BENCH_BODY and,
-- when done, prints one line `BENCH {json}` with throughput, latency percentiles (µs) and errors.
local file = assert(io.open(os.getenv("BENCH_BODY"), "r"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = file:read("*a")
file:close()

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
