#!/usr/bin/env bash
# The test suite: unit tests, then integration tests against the real servers it starts
# itself (Ceph RGW over HTTP and HTTPS, installed from Debian packages if missing; moto's
# server). Extra arguments go to pytest, e.g. scripts/test.sh -k etag -x
set -euo pipefail
EXTRAS=test . "$(dirname "$0")/_venv.sh"
cd "$ROOT"
status=0
python -m pytest "$@" || status=$?
if [ "$status" = 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$status"
