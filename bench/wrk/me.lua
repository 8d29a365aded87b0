-- Figure 1b: GET /api/me/ (token check, one query), one customer's ID token after another.
-- Argument: a file with one ID token per line.
dofile(debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "common.lua")

function build(args)
  local built = {}
  for _, token in ipairs(lines_of(args[1])) do
    table.insert(built, wrk.format("GET", "/api/me/", { ["Authorization"] = "Bearer " .. token }))
  end
  return built
end
