-- wrk script: replay prepared JSON request bodies, one per line of a file.
--
--   wrk -t T -c C -d LIMIT -s bench/replay.lua URL -- BODIES PATH MODE T [CAPTURE]
--
-- MODE "once":  every body is sent exactly once. Thread i (0-based) takes lines i+1, i+1+T, …;
--               when its slice is used up, its connections stay idle, and the thread stops as
--               soon as its last answer is in and prints "WRK_THREAD_DONE"; the caller then
--               sends wrk SIGINT, so wrk's duration is the real run time (LIMIT is only an
--               upper bound). Every 10 answers it prints "WRK_PROGRESS": a request that
--               never gets an answer (the server closed the connection) cannot hold the run
--               until LIMIT, the caller ends it when the answers stop coming.
-- MODE "cycle": the bodies are sent round and round until LIMIT ends.
-- CAPTURE:      append the "challenge_token" of every answer to CAPTURE.<i> (one per line).
--
-- Every non-2xx answer is counted (by status). done() prints one line "WRK_RESULT {json}".

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local requests = {}
local next_index = 1
local answered = 0
local mode = "once"
local capture = nil
local verify_pending = false
local statuses = {}

function init(args)
   local bodies, path, nthreads = args[1], args[2], tonumber(args[4])
   mode = args[3]
   local headers = { ["Content-Type"] = "application/json" }
   local line_number = 0
   for line in io.lines(bodies) do
      if mode == "cycle" or line_number % nthreads == id then
         table.insert(requests, wrk.format("POST", path, headers, line))
      end
      line_number = line_number + 1
   end
   if args[5] then
      capture = io.open(args[5] .. "." .. id, "w")
   end
   -- wrk calls request() once on thread 0 before the run, to check what it returns: that
   -- call must not use up a body.
   verify_pending = (id == 0)
   non2xx = 0
   done_answering = 0
end

function request()
   if verify_pending then
      verify_pending = false
      return requests[1]
   end
   if next_index > #requests then
      if mode == "once" then
         return "" -- nothing left for this connection: it idles until the thread stops
      end
      next_index = 1
   end
   local r = requests[next_index]
   next_index = next_index + 1
   return r
end

function response(status, headers, body)
   answered = answered + 1
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      statuses[status] = (statuses[status] or 0) + 1
      local parts = {}
      for code, n in pairs(statuses) do
         table.insert(parts, string.format('"%d":%d', code, n))
      end
      status_json = "{" .. table.concat(parts, ",") .. "}"
   end
   if capture then
      local token = string.match(body, '"challenge_token"%s*:%s*"([^"]+)"')
      if token then
         capture:write(token, "\n")
      end
   end
   if mode == "once" and answered % 10 == 0 then
      io.stdout:write("WRK_PROGRESS\n") -- for the caller's stall detection
      io.stdout:flush()
   end
   if mode == "once" and answered >= #requests then
      if capture then
         capture:close()
         capture = nil
      end
      done_answering = 1
      wrk.thread:stop()
      -- wrk's main thread sleeps for the whole -d: the harness sends it SIGINT once every
      -- thread has said this, so wrk's duration is the real run time.
      io.stdout:write("WRK_THREAD_DONE\n")
      io.stdout:flush()
   end
end

function done(summary, latency, requests)
   local non2xx_total, finished = 0, 0
   local per_thread = {}
   for _, thread in ipairs(threads) do
      non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
      finished = finished + (thread:get("done_answering") or 0)
      table.insert(per_thread, thread:get("status_json") or "{}")
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,' ..
      '"threads_finished":%d,"statuses_by_thread":[%s],' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d}}\n',
      summary.requests, summary.duration, summary.bytes, non2xx_total,
      finished, table.concat(per_thread, ","),
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
      latency:percentile(95), latency:percentile(99)))
end
