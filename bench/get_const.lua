-- get_const.lua -- wrk script: GET / against bench-const-server, the ceiling of the API runs.
-- Prints the same RESULT line as the other scripts.
function done(summary, latency, requests)
   io.write(string.format("RESULT requests=%d duration_s=%.3f requests_per_sec=%.1f p50_ms=%.3f " ..
                          "p99_ms=%.3f max_ms=%.3f non2xx=%d socket_errors=%d\n",
                          summary.requests, summary.duration / 1e6,
                          summary.requests / (summary.duration / 1e6),
                          latency:percentile(50) / 1000, latency:percentile(99) / 1000,
                          latency.max / 1000, summary.errors.status,
                          summary.errors.connect + summary.errors.read + summary.errors.write +
                          summary.errors.timeout))
end
