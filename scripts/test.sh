#!/usr/bin/env bash
# Quick start: set up (Python deps, Debian's chromium and influxdb for the tests), then lint,
# type-check and run the test suite. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test

# Debian packages the tests run for real: chromium (the page, headless) and influxdb (the
# InfluxDB sink and reader tests start their own influxd on free ports).
packages=""
if [ -z "${AMI_SKIP_BROWSER:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  packages="$packages chromium"
fi
if ! command -v influxd >/dev/null 2>&1; then
  packages="$packages influxdb"
fi
if [ -n "$packages" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $packages >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -q >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q $packages >/dev/null
  else
    echo "Debian packages needed by the tests:$packages (apt-get install$packages;" \
         "AMI_SKIP_BROWSER=1 skips the browser tests)" >&2
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
