#!/usr/bin/env bash
# Quick start: set up (Python deps, Debian's chromium for the browser tests), then lint,
# type-check and run the test suite. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test

if [ -z "${AMI_SKIP_BROWSER:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -q >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  else
    echo "Debian's chromium is needed for the browser tests: apt-get install chromium" \
         "(or set AMI_SKIP_BROWSER=1 to skip them)" >&2
    exit 1
  fi
fi

.venv/bin/ruff check gateway edge tests benchmarks
.venv/bin/mypy
set +e
.venv/bin/pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
