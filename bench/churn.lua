-- Scenario (e): churn. POST /v1/holds of one seat (best available in a
-- random section), then DELETE of that hold, again and again: holds that
-- end at once, the load under which hold records used to pile up.
--
-- Usage: wrk -tT ... -s churn.lua URL -- TOKENS_FILE EVENT_ID SECTIONS
--
-- Each wrk thread releases the holds it was answered 201 for before it asks
-- for more; any answer but 201 and 204 is counted as a warning. The seats
-- never run out: each is free again after its DELETE.
package.path = (os.getenv("BENCH_DIR") or ".") .. "/?.lua;" .. package.path
local common = require("common")

setup = common.setup
done = common.done

local headers, event_id, sections
-- Holds this thread was answered 201 for and has not released yet. wrk
-- answers each connection in order but interleaves a thread's connections,
-- so a response is told apart by itself: a 201 names its hold, a DELETE is
-- a 204 with no body. One customer per thread (its token), so that every
-- hold can be released with the token that made it.
local to_release = {}

warnings = 0

function init(args)
  local tokens_file = args[1] or error("churn.lua: TOKENS_FILE missing")
  event_id = args[2] or error("churn.lua: EVENT_ID missing")
  sections = tonumber(args[3])
  assert(sections, "churn.lua: bad arguments")
  local tokens = {}
  local f = assert(io.open(tokens_file, "r"))
  for line in f:lines() do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  f:close()
  assert(#tokens > 0, "churn.lua: no tokens in " .. tokens_file)
  headers = { ["Content-Type"] = "application/json",
              ["Authorization"] = "Bearer " .. tokens[thread_id % #tokens + 1] }
  math.randomseed(thread_id * 1000003 + os.time())
end

function request()
  local id = table.remove(to_release)
  if id then
    return wrk.format("DELETE", "/v1/holds/" .. id, headers)
  end
  local body = string.format(
    '{"event_id":"%s","section_id":"s%d","quantity":1}',
    event_id, math.random(sections))
  return wrk.format("POST", "/v1/holds", headers, body)
end

function response(status, _, body)
  if status == 201 then
    local id = string.match(body, '"hold_id":"([^"]+)"')
    if id then
      table.insert(to_release, id)
      return
    end
  end
  if status ~= 204 then
    warnings = warnings + 1
  end
end
