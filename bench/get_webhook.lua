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

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local result = require("result")
setup, response, done = result.setup, result.response, result.done

local headers = {
   ["Authorization"] = "Bearer " .. token,
}

function init(args)
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
