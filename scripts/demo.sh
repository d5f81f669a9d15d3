#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the demo: agents in each mode, used
# through fsspec URLs, the CLI and a FUSE mount.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
