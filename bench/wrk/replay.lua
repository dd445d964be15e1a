-- Replay pre-signed requests with wrk, at a paced rate per connection.
--
-- Usage: wrk -t1 -cC -dD --latency -s replay.lua URL -- REQUESTS_FILE DELAY_MS
--
-- REQUESTS_FILE has one request per line: METHOD, PATH and then "Name: value"
-- headers, separated by tabs. Each connection sends the requests in turn and
-- waits DELAY_MS between its requests (wrk's delay() hook), so the offered
-- rate is about connections * 1000 / (DELAY_MS + latency in ms).
-- done() prints one JSON line that starts with "WRK_RESULT ".

local requests = {}
local position = 0
local pause_ms = 0

local function split(line, separator)
   local fields = {}
   for field in string.gmatch(line, "([^" .. separator .. "]+)") do
      fields[#fields + 1] = field
   end
   return fields
end

function init(args)
   local path = args[1]
   pause_ms = tonumber(args[2] or "0")
   for line in io.lines(path) do
      local fields = split(line, "\t")
      if #fields >= 2 then
         local headers = {}
         for i = 3, #fields do
            local name, value = string.match(fields[i], "^([^:]+):%s*(.*)$")
            if name then
               headers[name] = value
            end
         end
         requests[#requests + 1] = wrk.format(fields[1], fields[2], headers, nil)
      end
   end
   if #requests == 0 then
      error("no request in " .. tostring(path))
   end
   -- Start each thread at another point of the list.
   position = math.random(#requests) - 1
end

function request()
   position = (position % #requests) + 1
   return requests[position]
end

function delay()
   return pause_ms
end

function done(summary, latency, requests_done)
   local errors = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.max, latency.mean))
end
