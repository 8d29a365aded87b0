-- Figure 1a: GET / of the bare WSGI app (bench/wsgi_ok.py). No arguments.
dofile(debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "common.lua")

function build(args)
  return { wrk.format("GET", "/") }
end
