#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
exec python3 -m pytest -p no:cacheprovider "$@"
