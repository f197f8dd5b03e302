-- wrk script: POSTs the benchmark review with its placeholders filled, the same bytes on every
-- request (so only scenarios without per-request codes fit: exempt, replay). Used to cross-check
-- twostep-loadgen (docs/benchmarks.md):
--   wrk -t1 -c32 -d10s --latency -s bench/wrk-review.lua https://127.0.0.1:PORT/validate \
--     -- bench/review-4.6k.json system:serviceaccount:shop:deployer 000000
function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  body = body:gsub("@USER@", args[2]):gsub("@CODE@", args[3]):gsub("@UID@", "wrk-0001")
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["User-Agent"] = "kube-apiserver-admission"
end

-- Counts answers that are not an allow, so a fast run of errors is not mistaken for a result
-- (each wrk thread has its own Lua state: done() sums them).
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

denied = 0
function response(status, headers, body)
  if status ~= 200 or not body:find('"allowed":true', 1, true) then
    denied = denied + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("denied")
  end
  io.write(string.format("not allowed: %d\n", total))
end
