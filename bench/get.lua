-- wrk script: GET the URL; optionally paced; prints one line "WRK_RESULT {json}".
--
--   wrk -t T -c C -d LIMIT -s bench/get.lua URL -- [INTERVAL_MS]
--
-- INTERVAL_MS > 0: each connection waits that long before each request (a light probe, e.g.
-- /healthz while logins load the machine). No response() callback: wrk's own fast path.

function init(args)
   local interval = tonumber(args[1] or "0")
   if interval > 0 then
      delay = function()
         return interval
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,' ..
      '"threads_finished":0,"statuses_by_thread":[],' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d}}\n',
      summary.requests, summary.duration, summary.bytes, e.status,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
      latency:percentile(95), latency:percentile(99)))
end
