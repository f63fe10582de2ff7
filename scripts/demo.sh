#!/usr/bin/env bash
# Quick start: set up, then run the demo (simulated Modbus meters -> edge agent ->
# SQLite store -> portal on http://127.0.0.1:8080). Arguments go to `ami-gateway demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ami-gateway demo "$@"
