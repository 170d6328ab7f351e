-- Requests are pre-built from a file of JSON bodies (one per line); each thread starts at its own offset.
-- Script arguments (after wrk's "--"): the bodies file, then optionally the Authorization header's
-- value ("Bearer <key>"), sent on every request; absent or empty: no Authorization header; then
-- optionally the path to POST to (default /trade).
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
local reqs = {}
local i = 0
function init(args)
  local path = args[1]
  local headers = { ["Content-Type"] = "application/json" }
  if args[2] ~= nil and args[2] ~= "" then headers["Authorization"] = args[2] end
  local target = args[3] or "/trade"
  for line in io.lines(path) do
    reqs[#reqs + 1] = wrk.format("POST", target, headers, line)
  end
  i = (tonumber(tid) or 0) * 7 % #reqs
end
function request()
  i = i + 1
  if i > #reqs then i = 1 end
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
