-- Shared by the wrk scripts of bench/run: thread ids and the result line.
--
-- wrk calls setup(thread) in its main Lua state once per thread, before that
-- thread's init(args); done() runs in the main state after the run. The
-- result is printed as one line that bench/run parses:
--   BENCH_RESULT requests=N duration_us=N non2xx=N ... p50_us=N p99_us=N max_us=N
local common = {}

local threads = {}

function common.setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function common.done(summary, latency, requests)
  local e = summary.errors
  local warnings = 0
  for _, t in ipairs(threads) do
    local w = t:get("warnings")
    if w then
      warnings = warnings + w
    end
  end
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d bytes=%d non2xx=%d connect=%d " ..
    "read=%d write=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "mean_us=%.0f threads=%d warnings=%d\n",
    summary.requests, summary.duration, summary.bytes, e.status, e.connect,
    e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, #threads, warnings))
end

return common
