-- Rungs d-h: GET of one path, with the customers' ID tokens in turn when a token file is
-- given. Arguments: the path, then (optional) a file with one ID token per line.
dofile(debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "common.lua")

function build(args)
  local path = args[1]
  if args[2] == nil then
    return { wrk.format("GET", path) }
  end
  local built = {}
  for _, token in ipairs(lines_of(args[2])) do
    table.insert(built, wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token }))
  end
  return built
end
