-- result.lua -- what the bench/*.lua wrk scripts share: numbering wrk's threads, counting
-- answers that are not 2xx (wrk itself counts only statuses above 399), and the last,
-- machine-readable line:
--   RESULT requests=N duration_s=S requests_per_sec=R p50_ms=A p99_ms=B max_ms=C non2xx=N
--          socket_errors=N
-- A script loads it with:
--   package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
--   local result = require("result")
--   setup, response, done = result.setup, result.response, result.done
-- and reads its thread number from the global `id`; setup also starts each thread's `non2xx`
-- at 0.

local M = {}
local threads = {}
local next_id = 1

function M.setup(thread)
   thread:set("id", next_id)
   thread:set("non2xx", 0)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function M.response(status, hdrs, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

function M.done(summary, latency, requests)
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

return M
