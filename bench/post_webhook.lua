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

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local result = require("result")
setup, response, done = result.setup, result.response, result.done

local headers = {
   ["Authorization"] = "Bearer " .. token,
   ["Content-Type"] = "application/json",
}

function init(args)
   counter = 0
end

function request()
   counter = counter + 1
   -- "<thread>-<n>" keeps every URL unique across wrk's threads, which count separately.
   local body = string.format('{"targetUrl":"http://127.0.0.1:9/hook/%d-%d"}', id, counter)
   return wrk.format("POST", "/webhooks", headers, body)
end
