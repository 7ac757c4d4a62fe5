-- get_const.lua -- wrk script: GET / against bench-const-server, the ceiling of the API runs.
-- Same RESULT line as the others (bench/result.lua).

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local result = require("result")
setup, response, done = result.setup, result.response, result.done
