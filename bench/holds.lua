-- Scenario (b): POST /v1/holds, one seat per hold.
--
-- Usage: wrk -tT ... -s holds.lua URL -- TOKENS_FILE EVENT_ID SECTIONS ROWS
--        SEATS_PER_ROW THREADS [permutation|random]
--
-- The event's sections are "s1".."sS", its rows "R1".."RR", each with
-- SEATS_PER_ROW seats (bench/run creates it so). Every wrk thread seeds its
-- own generator with its thread id and the time, and spreads its holds over
-- the customers' session tokens (one per line in TOKENS_FILE).
--
-- permutation (the default): thread k of T asks for the seats whose index is
--   k modulo T, in a random order (a full-period linear congruential sequence
--   with random parameters), so no seat is asked for twice, neither by one
--   thread nor by two: every answer should be 201 until the thread has asked
--   for all of its seats (then it counts a warning and starts over).
-- random: every seat of the event uniformly at random; repeats answer 409,
--   more of them as the event fills.
package.path = (os.getenv("BENCH_DIR") or ".") .. "/?.lua;" .. package.path
local common = require("common")

setup = common.setup
done = common.done

local tokens = {}
local event_id, sections, rows, per_row, total, nthreads, mode
-- the permutation state
local part, modulus, a, c, x, produced

warnings = 0

function init(args)
  local tokens_file = args[1] or error("holds.lua: TOKENS_FILE missing")
  event_id = args[2] or error("holds.lua: EVENT_ID missing")
  sections = tonumber(args[3])
  rows = tonumber(args[4])
  per_row = tonumber(args[5])
  nthreads = tonumber(args[6])
  mode = args[7] or "permutation"
  assert(sections and rows and per_row and nthreads, "holds.lua: bad arguments")
  total = sections * rows * per_row

  local f = assert(io.open(tokens_file, "r"))
  for line in f:lines() do
    if #line > 0 then
      tokens[#tokens + 1] = { ["Content-Type"] = "application/json",
                              ["Authorization"] = "Bearer " .. line }
    end
  end
  f:close()
  assert(#tokens > 0, "holds.lua: no tokens in " .. tokens_file)

  math.randomseed(thread_id * 1000003 + os.time())
  -- Let the first draws of a fresh seed go (LuaJIT's first values are fine,
  -- but this keeps the sequences of nearby seeds apart).
  for _ = 1, 10 do math.random() end

  part = math.ceil(total / nthreads)
  modulus = 1
  while modulus < part do modulus = modulus * 2 end
  -- Hull-Dobell: with a power-of-two modulus, c odd and a = 1 (mod 4) give a
  -- full period, so x visits every value below the modulus once per cycle.
  a = 4 * math.random(0, math.max(0, modulus / 4 - 1)) + 1
  c = 2 * math.random(0, math.max(0, modulus / 2 - 1)) + 1
  x = math.random(0, modulus - 1)
  produced = 0
end

-- The next seat index of this thread, 0 <= index < total. Bounded: at most
-- modulus steps per call.
local function next_index()
  if mode == "random" then
    return math.random(0, total - 1)
  end
  for _ = 1, modulus do
    x = (a * x + c) % modulus
    if x < part then
      local index = x * nthreads + thread_id
      if index < total then
        produced = produced + 1
        if produced > part then
          -- Every seat of this thread asked once: repeats follow (409s).
          warnings = warnings + 1
        end
        return index
      end
    end
  end
  return math.random(0, total - 1) -- not reached with a full period
end

function request()
  local index = next_index()
  -- Consecutive indexes land in different sections, so the load spreads
  -- over all section actors.
  local section = index % sections
  local rest = (index - section) / sections
  local row = rest % rows
  local seat = (rest - row) / rows
  local body = string.format(
    '{"event_id":"%s","section_id":"s%d","seats":["R%d-%d"]}',
    event_id, section + 1, row + 1, seat + 1)
  return wrk.format("POST", "/v1/holds", tokens[math.random(#tokens)], body)
end
