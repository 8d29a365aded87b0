#!/usr/bin/env bash
# The Debian packages the test suite needs besides Python's: chromium and chromium-driver for
# the browser tests (tests/browser/), wrk for the tiny benchmarks (tests/test_bench.py).
# `make test` and `.ci/run` run this first; it installs with apt-get only what is missing, as
# root. Not root: it says what is missing and the tests that need it are skipped, with why.
set -euo pipefail

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
command -v wrk >/dev/null || missing+=(wrk)
((${#missing[@]})) || exit 0

if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "system-packages: missing ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "system-packages: apt-get install ${missing[*]}"
apt-get install -y --no-install-recommends "${missing[@]}" \
  || { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
