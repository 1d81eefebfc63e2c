-- benches/lua/keys.lua: S7, fill the cache with N distinct keys (/data.json?k=1..N, N = the
-- first script argument, default 10000), then stop. With one wrk thread the counter is global;
-- requests past N wrap around (HITs) until the responses for the first N are in.
local n, done_count, N = 0, 0, 10000

init = function(args)
  if args[1] then N = tonumber(args[1]) end
end

request = function()
  n = n + 1
  return wrk.format("GET", "/data.json?k=" .. (((n - 1) % N) + 1))
end

response = function(status, headers, body)
  done_count = done_count + 1
  if done_count >= N then wrk.thread:stop() end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKRESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d p50=%d p99=%d p999=%d max=%d\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
