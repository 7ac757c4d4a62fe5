-- post_webhook.lua -- wrk script: POST /webhooks, each request registering a new target URL.
--
--   ADMIN_TOKEN=secret wrk -t2 -c64 -d10s -s bench/post_webhook.lua http://127.0.0.1:8080
--
-- URLs point at port 9 (discard) so that no delivery reaches a real server. The last line of
-- output is machine-readable:
--   RESULT requests=N duration_s=S requests_per_sec=R p50_ms=A p99_ms=B max_ms=C non2xx=N
--          socket_errors=N

local token = os.getenv("ADMIN_TOKEN")
if token == nil or token == "" then
   error("post_webhook.lua: set ADMIN_TOKEN")
end

local threads = {}
local next_id = 1

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local headers = {
   ["Authorization"] = "Bearer " .. token,
   ["Content-Type"] = "application/json",
}

function init(args)
   counter = 0
   non2xx = 0
end

function request()
   counter = counter + 1
   -- "<thread>-<n>" keeps every URL unique across wrk's threads, which count separately.
   local body = string.format('{"targetUrl":"http://127.0.0.1:9/hook/%d-%d"}', id, counter)
   return wrk.format("POST", "/webhooks", headers, body)
end

-- Defining response() costs wrk some speed, but wrk itself only counts statuses above 399.
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
