-- wrk script: POST /orders/{id}/payment-session, each request on a fresh order, for bench/suite.py.
--
--   PAYMENT_FILE=orders.txt WRK_THREADS=2 \
--   wrk -t2 -c64 -d10s --latency --timeout 10s -s bench/payment_session.lua http://127.0.0.1:8000
--
-- PAYMENT_FILE holds one unpaid order a line: "<id> <access token>"; WRK_THREADS must equal -t.
-- Thread k takes lines k+1, k+1+WRK_THREADS, ... and never wraps: a second request for an order
-- would answer the session already open, which is cheaper than opening one. A thread that runs out
-- stops (its last request is a GET /healthz, not counted as a session) and the final line says
-- "exhausted": that run did not last its full duration and its rate is not valid.

local file = os.getenv("PAYMENT_FILE") or "orders.txt"
local nthreads = tonumber(os.getenv("WRK_THREADS") or "2")

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  reqs = {}
  statuses = {}
  exhausted = 0
  local f = assert(io.open(file, "r"), "cannot open " .. file)
  local n = 0
  for line in f:lines() do
    local id, token = string.match(line, "^(%S+)%s+(%S+)$")
    if id then
      if n % nthreads == tid then
        table.insert(reqs, wrk.format("POST", "/orders/" .. id .. "/payment-session", {
          ["Authorization"] = "Bearer " .. token,
          ["Content-Type"] = "application/json",
        }, "{}"))
      end
      n = n + 1
    end
  end
  f:close()
  idx = 0
end

function request()
  idx = idx + 1
  if idx > #reqs then
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/healthz")
  end
  return reqs[idx]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  local out = 0
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses") or {}) do total[code] = (total[code] or 0) + n end
    out = out + (t:get("exhausted") or 0)
  end
  local parts = {}
  for code, n in pairs(total) do table.insert(parts, code .. "=" .. n) end
  table.sort(parts)
  io.write(string.format("payment_session.lua: %s exhausted=%d statuses: %s\n", file, out,
    table.concat(parts, " ")))
end
