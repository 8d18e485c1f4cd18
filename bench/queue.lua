-- The waiting room: POST /v1/events/{id}/queue (join) or GET /v1/queue/{ticket}
-- (poll).
--
-- Usage: wrk -tT ... -s queue.lua URL -- join|poll TOKENS_FILE EVENT_ID THREADS [POLLED]
--
-- TOKENS_FILE has one customer a line: "<session token> <ticket>" (bench/run
-- mints them; the ticket is the one the server gives that customer for
-- EVENT_ID). join: thread k of T joins with customers k, k + T, k + 2T, ...
-- in file order, so every join is a new customer until the file is used up
-- (then it starts over: repeat joins, counted in `warnings`). poll: every
-- request polls the ticket of a random one of the first POLLED customers
-- (all of them when not given), who must have joined (else 404: non-2xx).
package.path = (os.getenv("BENCH_DIR") or ".") .. "/?.lua;" .. package.path
local common = require("common")

setup = common.setup
done = common.done

local tokens, tickets = {}, {}
local mode, event_id, nthreads, polled, next_index

warnings = 0

function init(args)
  mode = args[1] or error("queue.lua: join or poll")
  local file = args[2] or error("queue.lua: TOKENS_FILE missing")
  event_id = args[3] or error("queue.lua: EVENT_ID missing")
  nthreads = tonumber(args[4]) or error("queue.lua: THREADS missing")
  local f = assert(io.open(file, "r"))
  for line in f:lines() do
    local token, ticket = line:match("^(%S+) (%S+)$")
    if token then
      tokens[#tokens + 1] = { ["Authorization"] = "Bearer " .. token }
      tickets[#tickets + 1] = ticket
    end
  end
  f:close()
  assert(#tokens > 0, "queue.lua: no customers in " .. file)
  polled = math.min(tonumber(args[5]) or #tokens, #tokens)
  math.randomseed(thread_id * 1000003 + os.time())
  next_index = thread_id + 1
end

function request()
  if mode == "join" then
    local i = next_index
    next_index = next_index + nthreads
    if next_index > #tokens then
      next_index = thread_id + 1
      warnings = warnings + 1
    end
    return wrk.format("POST", "/v1/events/" .. event_id .. "/queue", tokens[i])
  end
  local i = math.random(polled)
  return wrk.format("GET", "/v1/queue/" .. tickets[i], tokens[i])
end
