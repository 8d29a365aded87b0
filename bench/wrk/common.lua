-- Shared by the bench's wrk scripts (bench/http_bench.py runs them).
--
-- A script loads this with dofile(), then sets `build(args)`, which returns the list of
-- requests (wrk.format strings) the thread sends in turn. Each thread starts at its own
-- offset in that list, so the threads do not send the same customer at the same time.
-- Every response that is not 2xx is counted (by status), and done() prints one line:
--   WRK_JSON {"requests": ..., "rps": ..., "p50_us": ..., "p99_us": ..., "non2xx": ...,
--             "latency_us": [[value, count], ...]}
-- where latency_us is every latency recorded (microseconds) with how often, so that runs in
-- several slices can be merged into exact percentiles.

local threads = {}
local thread_count = 0

function lines_of(path)
  local found = {}
  local file = assert(io.open(path, "r"), "cannot open " .. path)
  for line in file:lines() do
    if line ~= "" then
      table.insert(found, line)
    end
  end
  file:close()
  assert(#found > 0, path .. " is empty")
  return found
end

function setup(thread)
  thread:set("thread_number", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  requests = build(args)
  index = (thread_number or 0) * 7
  non2xx = 0
  codes = {}
end

function request()
  index = index + 1
  return requests[(index % #requests) + 1]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    local code = tostring(status)
    codes[code] = (codes[code] or 0) + 1
  end
end

function done(summary, latency, requests_stats)
  local bad = 0
  local merged = {}
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
    for code, count in pairs(thread:get("codes") or {}) do
      merged[code] = (merged[code] or 0) + count
    end
  end
  local parts = {}
  for code, count in pairs(merged) do
    table.insert(parts, string.format('"%s": %d', code, count))
  end
  local histogram = {}
  for i = 1, #latency do
    local value, count = latency(i)
    table.insert(histogram, string.format("[%d, %d]", value, count))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "rps": %.3f, "mean_us": %.1f, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "non2xx": %d, ' ..
    '"codes": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d}, "latency_us": [%s]}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, bad, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(histogram, ", ")
  ))
end
