-- wrk script: replay prepared requests, one per line of a file.
--
--   wrk -t T -c C -d LIMIT -s bench/replay.lua URL -- LINES PATH MODE T [OPTION=VALUE …]
--
-- MODE "once":  every line is sent exactly once. Thread i (0-based) takes lines i+1, i+1+T, …;
--               when its slice is used up, its connections stay idle, and the thread stops as
--               soon as its last answer is in and prints "WRK_THREAD_DONE"; the caller then
--               sends wrk SIGINT, so wrk's duration is the real run time (LIMIT is only an
--               upper bound). Every 10 answers it prints "WRK_PROGRESS": a request that
--               never gets an answer (the server closed the connection) cannot hold the run
--               until LIMIT, the caller ends it when the answers stop coming.
-- MODE "cycle": each thread sends its share of the lines (the same slice as "once") round and
--               round until LIMIT ends: no two threads send the same line at once (the
--               refresh floor updates a token's rows, and two transactions on one row would
--               wait for each other). A thread left without a share (fewer lines than
--               threads) sends them all.
--
-- Options:
--   as=json      (default) POST PATH with the line as its JSON body;
--   as=form      POST PATH with the line as its application/x-www-form-urlencoded body;
--   as=bearer    GET PATH with the line as the access token: "Authorization: Bearer <line>".
--   header=N: V  one more header on every request (introspection's client credentials).
--   capture=FILE append, per answer, the string values of the JSON members named by
--                `fields` (space-separated, one answer per line) to FILE.<i>; an answer
--                without all of them writes nothing.
--   fields=A,B   the members to capture (default: challenge_token).
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
local fields = { "challenge_token" }
local verify_pending = false
local statuses = {}

local CONTENT_TYPES = {
   json = "application/json",
   form = "application/x-www-form-urlencoded",
}

local function options(args)
   local out = { as = "json" }
   for i = 5, #args do
      local name, value = string.match(args[i], "^(%a+)=(.*)$")
      if not name then
         error("replay.lua: not an OPTION=VALUE: " .. args[i])
      end
      out[name] = value
   end
   return out
end

-- The request for one line, built once (wrk.format) before the run.
local function builder(path, opts)
   local extra_name, extra_value = nil, nil
   if opts.header then
      extra_name, extra_value = string.match(opts.header, "^([^:]+):%s*(.*)$")
   end
   local function headers()
      local h = {}
      if extra_name then
         h[extra_name] = extra_value
      end
      return h
   end
   if opts.as == "bearer" then
      return function(line)
         local h = headers()
         h["Authorization"] = "Bearer " .. line
         return wrk.format("GET", path, h)
      end
   end
   local content_type = CONTENT_TYPES[opts.as]
   if not content_type then
      error("replay.lua: as= json, form or bearer, not " .. opts.as)
   end
   local h = headers()
   h["Content-Type"] = content_type
   return function(line)
      return wrk.format("POST", path, h, line)
   end
end

function init(args)
   local lines, path, nthreads = args[1], args[2], tonumber(args[4])
   mode = args[3]
   local opts = options(args)
   local build = builder(path, opts)
   local mine, first = {}, {}
   local line_number = 0
   for line in io.lines(lines) do
      if line_number % nthreads == id then
         table.insert(mine, line)
      end
      if line_number < nthreads then
         table.insert(first, line)
      end
      line_number = line_number + 1
   end
   if mode == "cycle" and #mine == 0 then
      mine = first -- fewer lines than threads: this thread has no share, it sends them all
   end
   for _, line in ipairs(mine) do
      table.insert(requests, build(line))
   end
   if opts.capture then
      capture = io.open(opts.capture .. "." .. id, "w")
   end
   if opts.fields then
      fields = {}
      for name in string.gmatch(opts.fields, "[^,]+") do
         table.insert(fields, name)
      end
   end
   -- wrk calls request() once on thread 0 before the run, to check what it returns: that
   -- call must not use up a line.
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

local function capture_answer(body)
   local values = {}
   for _, name in ipairs(fields) do
      local value = string.match(body, '"' .. name .. '"%s*:%s*"([^"]+)"')
      if not value then
         return
      end
      table.insert(values, value)
   end
   capture:write(table.concat(values, " "), "\n")
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
      capture_answer(body)
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
