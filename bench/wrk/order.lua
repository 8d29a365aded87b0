-- Figure 1c: POST /api/orders/ with 3 lines, rotating customers and carts.
-- Arguments: a file with one ID token per line, a file with one SKU per line (at least 3).
-- Request n is customer n mod C with the SKUs n, n+1, n+2 (mod S), quantities 1, 2, 3.
dofile(debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "common.lua")

local address = '{"name": "Bench Customer", "line1": "1 Main St", "city": "Springfield", ' ..
  '"postal_code": "12345", "country": "US"}'

function build(args)
  local tokens = lines_of(args[1])
  local skus = lines_of(args[2])
  assert(#skus >= 3, "order.lua needs at least 3 SKUs")
  local built = {}
  for n = 0, #tokens * #skus - 1 do
    local items = {}
    for k = 0, 2 do
      local sku = skus[((n + k) % #skus) + 1]
      table.insert(items, string.format('{"sku": "%s", "quantity": %d}', sku, k + 1))
    end
    local body = '{"shipping_address": ' .. address .. ', "items": [' ..
      table.concat(items, ", ") .. ']}'
    local headers = {
      ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1],
      ["Content-Type"] = "application/json",
    }
    table.insert(built, wrk.format("POST", "/api/orders/", headers, body))
  end
  return built
end
