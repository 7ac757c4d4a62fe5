-- get_webhook.lua -- wrk script: GET /webhooks/<id>, cycling over the ids in a file.
--
--   ADMIN_TOKEN=secret IDS_FILE=ids.txt wrk -t2 -c64 -d10s -s bench/get_webhook.lua \
--       http://127.0.0.1:8080
--
-- IDS_FILE holds one webhook id per line (blank lines are skipped). Each thread starts at a
-- different place in the list so that the threads do not ask for the same ids in step.
-- The last line of output is machine-readable:
--   RESULT requests=N duration_s=S requests_per_sec=R p50_ms=A p99_ms=B max_ms=C non2xx=N
--          socket_errors=N

local token = os.getenv("ADMIN_TOKEN")
if token == nil or token == "" then
   error("get_webhook.lua: set ADMIN_TOKEN")
end
local ids_file = os.getenv("IDS_FILE")
if ids_file == nil or ids_file == "" then
   error("get_webhook.lua: set IDS_FILE to a file of webhook ids, one a line")
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
}

function init(args)
   non2xx = 0
   -- Requests are built once here: building one per call would cost wrk more than the
   -- server it measures.
   reqs = {}
   local f = io.open(ids_file, "r")
   if f == nil then
      error("get_webhook.lua: cannot open IDS_FILE " .. ids_file)
   end
   for line in f:lines() do
      local webhook_id = line:match("^%s*(.-)%s*$")
      if webhook_id ~= "" then
         table.insert(reqs, wrk.format("GET", "/webhooks/" .. webhook_id, headers))
      end
   end
   f:close()
   if #reqs == 0 then
      error("get_webhook.lua: IDS_FILE " .. ids_file .. " holds no ids")
   end
   pos = ((id - 1) * 7919) % #reqs
end

function request()
   pos = pos % #reqs + 1
   return reqs[pos]
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
