"""The fault table: the pipeline's calls (tests/drop_in/pipeline.py), each under each fault,
with raw boto3 and with object_clerk's hardened client, through the fault proxy to Ceph.

Print the table for README::

    python -m tests.drop_in.fault_table

Each (call, fault) pair runs the call's step with one fault on the call's first matching
request. Outcomes: ``fine`` (the call succeeded and the bytes are right), ``silent wrong
bytes`` (it succeeded and the bytes are wrong), ``exception (Type)``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from tests.drop_in.pipeline import STEPS, WrongBytes, make_client
from tests.faults.proxy import Fault, FaultProxy, Rule
from tests.servers import Backend

GET_BODY = {"get_object", "download_file", "download_fileobj"}
PUT_BODY = {"put_object", "upload_part", "upload_file", "upload_fileobj"}

# fault name -> (the proxy's fault, SigV4 payload signing, the calls it applies to)
FAULTS: dict[str, tuple[Fault, bool, set[str] | None]] = {
    "GET body byte flipped": (Fault.FLIP_RESPONSE, True, GET_BODY),
    "PUT body byte flipped, payload signed": (Fault.FLIP_REQUEST, True, PUT_BODY),
    "PUT body byte flipped, payload unsigned": (Fault.FLIP_REQUEST, False, PUT_BODY),
    "body cut mid-way": (Fault.RESET_MID_BODY, True, GET_BODY),
    "SlowDown (503)": (Fault.SLOW_DOWN, True, None),
    "reset before response": (Fault.RESET_BEFORE_RESPONSE, True, None),
}

CLIENTS = ("boto3", "object_clerk")

# The hardened client's retries, from the environment as a user would set them: quick.
RETRY_ENVIRONMENT = {
    "OBJECT_CLERK_RETRY_DELAY": "0.05",
    "OBJECT_CLERK_RETRY_JITTER": "0",
    "OBJECT_CLERK_RETRY_MAX_DELAY": "0.2",
}


def pairs() -> Iterator[tuple[str, str]]:
    for call in STEPS:
        for fault, (_, _, calls) in FAULTS.items():
            if calls is None or call in calls:
                yield call, fault


def outcome(kind: str, call: str, fault_name: str, proxy: FaultProxy, backend: Backend) -> str:
    """Run one call's step under one fault; say what happened."""
    step, target = STEPS[call]
    fault, signed, _ = FAULTS[fault_name]
    s3 = make_client(
        kind,
        proxy.endpoint,
        access_key=backend.access_key,
        secret_key=backend.secret_key,
        signed_payload=signed,
    )
    check = backend.raw()
    bucket = backend.new_bucket("faults")
    proxy.clear()
    rule = proxy.add(Rule(fault, method=target.method, key=target.key, query=target.query))
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            step(s3, check, bucket, Path(tmp))
    except WrongBytes:
        return "silent wrong bytes"
    except Exception as exc:
        return f"exception ({type(exc).__name__})"
    finally:
        proxy.clear()
    if not rule.fired:
        return "fault not applied"
    return "fine"


@contextmanager
def retry_environment() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in RETRY_ENVIRONMENT}
    os.environ.update(RETRY_ENVIRONMENT)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def table(rows: dict[tuple[str, str], dict[str, str]]) -> str:
    """The table as reStructuredText (a simple table), for README.rst."""
    cells = [("call", "fault", "raw boto3", "object_clerk.client")]
    cells += [
        (f"``{call}``", fault, results["boto3"], results["object_clerk"])
        for (call, fault), results in rows.items()
    ]
    widths = [max(len(row[n]) for row in cells) for n in range(4)]
    rule = " ".join("=" * width for width in widths)

    def line(row: tuple[str, ...]) -> str:
        return " ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([rule, line(cells[0]), rule, *map(line, cells[1:]), rule])


def main() -> None:
    from tests.servers import ceph_backends, start_ceph

    env, _ = start_ceph()
    backend = next(b for b in ceph_backends(env) if b.name == "ceph-http")
    upstream = urlsplit(backend.endpoint)
    assert upstream.hostname is not None and upstream.port is not None
    rows: dict[tuple[str, str], dict[str, str]] = {}
    with (
        FaultProxy((upstream.hostname, upstream.port), stall_seconds=60) as proxy,
        retry_environment(),
    ):
        try:
            for call, fault in pairs():
                rows[call, fault] = {
                    kind: outcome(kind, call, fault, proxy, backend) for kind in CLIENTS
                }
        finally:
            backend.cleanup()
    print(table(rows))


if __name__ == "__main__":
    main()
