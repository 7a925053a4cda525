-- wrk script: GET /orders/{id} with each order's bearer token, for bench/suite.py.
--
--   ORDER_FILE=orders.txt wrk -t2 -c64 -d10s --latency --timeout 10s -s bench/order_read.lua http://127.0.0.1:8000
--
-- ORDER_FILE holds one order a line: "<id> <access token>". Reads change nothing, so each thread
-- cycles through the file from its own offset. Prints per-status counts on one line ("statuses: ...").

local file = os.getenv("ORDER_FILE") or "orders.txt"

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
  local f = assert(io.open(file, "r"), "cannot open " .. file)
  for line in f:lines() do
    local id, token = string.match(line, "^(%S+)%s+(%S+)$")
    if id then
      table.insert(reqs, wrk.format("GET", "/orders/" .. id, {["Authorization"] = "Bearer " .. token}))
    end
  end
  f:close()
  assert(#reqs > 0, "no orders in " .. file)
  idx = (tid * math.floor(#reqs / 2)) % #reqs
end

function request()
  idx = idx % #reqs + 1
  return reqs[idx]
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
  io.write(string.format("order_read.lua: %s statuses: %s\n", file, table.concat(parts, " ")))
end
