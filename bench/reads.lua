-- Scenario (c): GET /v1/events/{id}. Usage: wrk ... -s reads.lua URL -- EVENT_ID
package.path = (os.getenv("BENCH_DIR") or ".") .. "/?.lua;" .. package.path
local common = require("common")

setup = common.setup
done = common.done

function init(args)
  local event_id = args[1] or error("reads.lua: pass the event id after --")
  wrk.method = "GET"
  wrk.path = "/v1/events/" .. event_id
end
