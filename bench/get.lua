-- wrk script: a plain GET of the URL's path that counts statuses, for bench/suite.py.
--
--   wrk -t2 -c64 -d10s --latency --timeout 10s -s bench/get.lua http://127.0.0.1:8000/healthz
--
-- wrk's own "Non-2xx or 3xx responses" counts 4xx and 5xx only; this prints every status.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses") or {}) do total[code] = (total[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(total) do table.insert(parts, code .. "=" .. n) end
  table.sort(parts)
  io.write(string.format("get.lua: %s statuses: %s\n", wrk.path, table.concat(parts, " ")))
end
