-- holds.lua with a rate: each connection waits PACE_MS after an answer
-- before its next request (wrk's delay()), so the load comes at about
-- connections / (PACE_MS + latency) requests per second instead of as fast
-- as the node answers.
--
-- Usage: as holds.lua, with PACE_MS (> 0) after its arguments:
--   wrk ... -s paced_holds.lua URL -- TOKENS_FILE EVENT_ID SECTIONS ROWS
--          SEATS_PER_ROW THREADS permutation|random PACE_MS
--
-- wrk holds no fixed rate as wrk2 does: a slow answer delays that
-- connection's next request, so while the node stalls this load slows down
-- with it, and its latencies understate what a fixed-rate client would see.
-- delay() must exist when the script is loaded (wrk asks before init), so
-- it lives here, not in holds.lua, whose runs stay unpaced.
dofile((os.getenv("BENCH_DIR") or ".") .. "/holds.lua")

local holds_init = init
local pace_ms

function init(args)
  pace_ms = tonumber(args[8] or "")
  assert(pace_ms and pace_ms > 0, "paced_holds.lua: PACE_MS missing")
  holds_init(args)
end

function delay()
  return pace_ms
end
