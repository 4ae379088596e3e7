#!/usr/bin/env bash
# The demo: verified upload, get, copy, move, list and delete of a multipart object, then a
# content-verified sync of a directory, a download of the prefix, and a scrub of the bucket.
# With no OBJECT_CLERK_ENDPOINT_URL set, it starts the project's local Ceph RGW first
# (installing the Debian packages if needed) and stops it afterwards.
set -euo pipefail
EXTRAS="" . "$(dirname "$0")/_venv.sh"
started=0
if [ -z "${OBJECT_CLERK_ENDPOINT_URL:-}" ]; then
    bash "$ROOT/scripts/ceph-rgw.sh" status 2>/dev/null || started=1
    eval "$(bash "$ROOT/scripts/ceph-rgw.sh" up | sed 's/^/export /')"
    export OBJECT_CLERK_ENDPOINT_URL="$CEPH_RGW_ENDPOINT"
    export OBJECT_CLERK_ACCESS_KEY="$CEPH_RGW_ACCESS_KEY" OBJECT_CLERK_SECRET_KEY="$CEPH_RGW_SECRET_KEY"
    export OBJECT_CLERK_REGION=us-east-1
fi
status=0
python -m object_clerk.demo || status=$?
if [ "$started" = 1 ]; then bash "$ROOT/scripts/ceph-rgw.sh" down >/dev/null 2>&1; fi
exit "$status"
