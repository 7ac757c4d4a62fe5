-- post_target.lua -- wrk script: POST a delivery-shaped body to webhook-target's /ok/ path.
--
--   wrk -t2 -c64 -d5s -s bench/post_target.lua http://127.0.0.1:<target port>
--
-- It measures the target alone, to show it is not the bottleneck of a delivery benchmark.
-- Run the target with --no-record so its memory stays flat. Same RESULT line as the others.

local threads = {}
local next_id = 1

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local headers = {
   ["Content-Type"] = "application/json",
   ["User-Agent"] = "bench/post_target.lua",
}

function init(args)
   counter = 0
   non2xx = 0
end

function request()
   counter = counter + 1
   local body = string.format('{"ipAddress":"127.0.0.1","timestamp":%d}', os.time())
   return wrk.format("POST", string.format("/ok/bench-%d-%d", id, counter), headers, body)
end

function response(status, hdrs, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   local non2xx_total = 0
   for _, thread in ipairs(threads) do
      non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      "RESULT requests=%d duration_s=%.2f requests_per_sec=%.1f p50_ms=%.3f p99_ms=%.3f " ..
      "max_ms=%.3f non2xx=%d socket_errors=%d\n",
      summary.requests, secs, summary.requests / secs, latency:percentile(50) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000, non2xx_total,
      e.connect + e.read + e.write + e.timeout))
end
