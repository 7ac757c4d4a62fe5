-- post_target.lua -- wrk script: POST a delivery-shaped body to webhook-target's /ok/ path.
--
--   wrk -t2 -c64 -d5s -s bench/post_target.lua http://127.0.0.1:<target port>
--
-- It measures the target alone, to show it is not the bottleneck of a delivery benchmark.
-- Run the target with --no-record so its memory stays flat. Same RESULT line as the others.

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local result = require("result")
setup, response, done = result.setup, result.response, result.done

local headers = {
   ["Content-Type"] = "application/json",
   ["User-Agent"] = "bench/post_target.lua",
}

function init(args)
   counter = 0
end

function request()
   counter = counter + 1
   local body = string.format('{"ipAddress":"127.0.0.1","timestamp":%d}', os.time())
   return wrk.format("POST", string.format("/ok/bench-%d-%d", id, counter), headers, body)
end
