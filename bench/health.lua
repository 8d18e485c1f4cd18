-- Scenario (a): GET /health, the HTTP ceiling of the machine.
package.path = (os.getenv("BENCH_DIR") or ".") .. "/?.lua;" .. package.path
local common = require("common")

wrk.method = "GET"
wrk.path = "/health"

setup = common.setup
done = common.done
