-- One wrk script for every scenario and its floor, driven by BENCH_* environment variables
-- (bench/wrk.py sets them). The floor runs the same script with the same bodies, so the
-- generator's own per-request cost is identical on both sides of a ratio.
--
--   BENCH_PATH      request path
--   BENCH_MODE      "template": one body, each "@N@" in it (and in BENCH_HEADER) replaced by
--                   a token unique to the request; "lines": a file of "<header value>\t<body>"
--                   lines, thread i sending lines i, i+T, i+2T, ...
--   BENCH_FILE      the template or the lines
--   BENCH_HEADER    "Name: value" sent with every request ("@N@" and, in lines mode, "@V@"
--                   for the line's header value are substituted)
--   BENCH_EXPECT    what counts as success: "202", "200:PG_ACCEPTED" (a 200 whose body says
--                   PG_ACCEPTED), "2xx", "2xx-fresh" (a 2xx that is not "duplicate": true),
--                   "2xx-dup" (a 2xx that is)
--   BENCH_LIMIT     >0: send each line once (lines mode) or this many requests in all
--                   (template mode); a thread that has its share answered writes a file
--                   named by its id into BENCH_DONE_DIR and stops (bench/wrk.py then ends
--                   wrk with SIGINT). 0: keep going for the whole duration, cycling
--   BENCH_DELAY_MS  wait this long before each request on a connection (a rate cap)
--   BENCH_CAPTURE   a directory: each successful answer's "referenceId" and "id" are
--                   appended to <dir>/<thread id> as "<referenceId>\t<id>" lines
--   BENCH_THREADS   wrk's -t, so each thread knows its share
--   BENCH_TAG       makes "@N@" tokens unique across runs

local path = os.getenv("BENCH_PATH") or "/"
local mode = os.getenv("BENCH_MODE") or "template"
local expect = os.getenv("BENCH_EXPECT") or "2xx"
local header = os.getenv("BENCH_HEADER")
local limit = tonumber(os.getenv("BENCH_LIMIT") or "0")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local tag = os.getenv("BENCH_TAG") or "run"
local done_dir = os.getenv("BENCH_DONE_DIR")
local capture_dir = os.getenv("BENCH_CAPTURE")

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

local function read_file(name)
   local f = assert(io.open(name, "rb"))
   local text = f:read("*a")
   f:close()
   return text
end

function init(args)
   ok, answered, sent, wraps = 0, 0, 0, 0
   outcomes = {}
   headers = {}
   for k, v in pairs(wrk.headers) do headers[k] = v end
   if header then
      header_name, header_value = header:match("^([^:]+):%s*(.*)$")
   end
   if mode == "lines" then
      lines = {}
      local i = 0
      for line in io.lines(os.getenv("BENCH_FILE")) do
         if i % nthreads == id then
            local value, body = line:match("^([^\t]*)\t(.*)$")
            table.insert(lines, { value, body })
         end
         i = i + 1
      end
      share = #lines
   else
      template = read_file(os.getenv("BENCH_FILE")):gsub("\n$", "")
      share = math.floor(limit / nthreads) + ((id < limit % nthreads) and 1 or 0)
   end
   if limit == 0 then share = 0 end
   if capture_dir then
      capture = assert(io.open(capture_dir .. "/" .. id, "w"))
      capture:setvbuf("line") -- wrk exits without closing its Lua states
   end
   -- Once a limited thread has sent its share, its connections only ask for /healthz,
   -- slowly, until the last answers are in; those answers are not counted.
   overflow = wrk.format("GET", "/healthz", headers, nil)
end

local function build(value, token)
   local h = headers
   if header_name then
      h = {}
      for k, v in pairs(headers) do h[k] = v end
      h[header_name] = header_value:gsub("@N@", token):gsub("@V@", value or "")
   end
   return h
end

function request()
   -- wrk calls request() once on thread 0 before the run, to check what it builds, and
   -- discards the result: that call must not use up a line or a share.
   if id == 0 and not verified then
      verified = true
      return overflow
   end
   if share > 0 and sent >= share then
      return overflow
   end
   sent = sent + 1
   local token = tag .. "-" .. id .. "-" .. sent
   if mode == "lines" then
      local index = (sent - 1) % #lines + 1
      if sent > #lines and index == 1 then wraps = wraps + 1 end
      local line = lines[index]
      return wrk.format("POST", path, build(line[1], token), line[2])
   end
   return wrk.format("POST", path, build(nil, token), (template:gsub("@N@", token)))
end

if delay_ms > 0 or limit > 0 then
   function delay()
      if share > 0 and sent >= share then return 50 end
      return delay_ms
   end
end

local function classify(status, body)
   if expect == "202" then
      if status == 202 then return "ok" end
   elseif expect == "200:PG_ACCEPTED" then
      if status == 200 and body:find('"status"%s*:%s*"PG_ACCEPTED"') then return "ok" end
   elseif status >= 200 and status < 300 then
      -- Looked for in every 2xx, so each expectation costs the generator the same.
      local duplicate = body:find('"duplicate"%s*:%s*true') ~= nil
      if expect == "2xx-fresh" then return duplicate and "2xx duplicate" or "ok" end
      if expect == "2xx-dup" then return duplicate and "ok" or "2xx stored" end
      return "ok"
   end
   local state = body:match('"status"%s*:%s*"(%u[%u_]+)"')
   return tostring(status) .. (state and (" " .. state) or "")
end

function response(status, headers, body)
   if share > 0 and sent >= share and body:find('"status"%s*:%s*"up"') then
      return -- an overflow /healthz
   end
   answered = answered + 1
   local what = classify(status, body)
   if what == "ok" then
      ok = ok + 1
      if capture then
         local ref = body:match('"referenceId"%s*:%s*"([^"]+)"') or ""
         local pid = body:match('"id"%s*:%s*"([^"]+)"') or ""
         capture:write(ref, "\t", pid, "\n")
      end
   end
   outcomes[what] = (outcomes[what] or 0) + 1
   if share > 0 and answered == share then
      if done_dir then assert(io.open(done_dir .. "/" .. id, "w")):close() end
      wrk.thread:stop()
   end
end

local function json_string(s)
   return '"' .. tostring(s):gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
   end) .. '"'
end

function done(summary, latency, requests)
   local total = { ok = 0, answered = 0, sent = 0, wraps = 0 }
   local merged = {}
   for _, t in ipairs(threads) do
      for k, _ in pairs(total) do total[k] = total[k] + (t:get(k) or 0) end
      for k, v in pairs(t:get("outcomes") or {}) do merged[k] = (merged[k] or 0) + v end
   end
   local parts = {}
   for k, v in pairs(merged) do table.insert(parts, json_string(k) .. ":" .. v) end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"duration_us":%d,"requests":%d,"ok":%d,"answered":%d,"sent":%d,' ..
      '"wraps":%d,"outcomes":{%s},"errors":{"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,' ..
      '"mean":%.1f}}\n',
      summary.duration, summary.requests, total.ok, total.answered, total.sent, total.wraps,
      table.concat(parts, ","), e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean))
end
