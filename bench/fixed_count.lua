-- wrk script for instruction counts: stop after exactly BENCH_REQUESTS
-- responses. wrk's own thread:stop() does not end the run before -d, so
-- this exits the process; the harness then waits for the server to go idle
-- before it dumps callgrind's counters. Any status but 200 exits 2.
local limit = tonumber(os.getenv("BENCH_REQUESTS") or "")
if not limit then
  io.stderr:write("fixed_count.lua: set BENCH_REQUESTS\n")
  os.exit(2)
end
local done = 0

response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("fixed_count.lua: status " .. status .. "\n")
    os.exit(2)
  end
  done = done + 1
  if done >= limit then
    io.stdout:write("fixed_count: " .. done .. " responses\n")
    io.stdout:flush()
    os.exit(0)
  end
end
