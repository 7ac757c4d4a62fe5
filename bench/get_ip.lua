-- get_ip.lua -- wrk script: GET /ip through the gateway, the trigger rate. Only 202s count as
-- accepted triggers: the RESULT line's non2xx says how many were not.

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local result = require("result")
setup, response, done = result.setup, result.response, result.done

wrk.method = "GET"
wrk.path = "/ip"
