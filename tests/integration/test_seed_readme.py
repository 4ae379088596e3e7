"""The contract: every Python snippet of the original object-clerk README runs unchanged
against the local Ceph RGW (tests/data/seed-object-clerk-README.rst is that README)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from object_clerk import ObjectClerk
from tests.servers import Backend, empty_bucket

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parent.parent / "data" / "seed-object-clerk-README.rst"
BUCKETS = ("bucket", "source_bucket", "destination_bucket", "bucket_name")


def snippets() -> list[tuple[str, str]]:
    """(title, code) for each ``.. code:: python`` block, split at its "# with(out)
    checksum verified" comments so each variant runs on a fresh setup."""
    text = README.read_text()
    found: list[tuple[str, str]] = []
    pattern = re.compile(
        r"\*\*(?P<title>[^*]+)\*\*\s*\n\s*\.\. code:: python\n\n(?P<body>(?:[ \t]+.*\n|\s*\n)+)"
    )
    for match in pattern.finditer(text):
        lines = [
            line[4:] if line.startswith("    ") else line for line in match["body"].splitlines()
        ]
        code = "\n".join(lines).strip()
        parts = re.split(r"(?m)^(?=# with)", code)
        for index, part in enumerate(p for p in parts if p.strip()):
            found.append((f"{match['title']} #{index + 1}", part.strip()))
    return found


SNIPPETS = snippets()


def test_the_seed_readme_has_every_documented_operation() -> None:
    """The parser found the README's snippets (a parser that finds none would pass vacuously)."""
    titles = {title.split(" #")[0] for title, _ in SNIPPETS}
    assert titles == {
        "Initialize",
        "Get Object",
        "Delete Object",
        "Get Object Info",
        "Copy Object",
        "Upload Object",
        "Move Object",
        "List Object",
    }
    assert len(SNIPPETS) == 12


def repaired_init(code: str, backend: Backend) -> str:
    """The seed's init line is not valid Python (an unquoted IP, a stray quote) and points at
    a server we don't have. Repair exactly that, keep every argument name and the rest."""
    host, port = re.match(r"https?://([^:]+):(\d+)", backend.endpoint).groups()  # type: ignore[union-attr]
    code = code.rstrip("'")
    code = re.sub(r"host=[^,]+", f"host={host!r}", code)
    code = re.sub(r"port=\d+", f"port={port}", code)
    code = re.sub(r"access_key=\w+", f"access_key={backend.access_key!r}", code)
    return re.sub(r"secret_key=\w+", f"secret_key={backend.secret_key!r}", code)


@pytest.fixture
def seed_world(ceph: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The buckets, objects and local file the snippets name."""
    raw = ceph.raw()
    for name in BUCKETS:
        try:
            raw.create_bucket(Bucket=name)
        except raw.exceptions.BucketAlreadyOwnedByYou:
            empty_bucket(raw, name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_bytes(b"seed file contents\n" * 1000)
    yield raw
    for name in BUCKETS:
        empty_bucket(raw, name)
        raw.delete_bucket(Bucket=name)


@pytest.mark.parametrize(("title", "code"), SNIPPETS, ids=[t for t, _ in SNIPPETS])
def test_seed_snippet_runs_unchanged(ceph: Backend, seed_world: Any, title: str, code: str) -> None:
    """Each snippet runs; its effect is checked on the server."""
    raw = seed_world
    raw.put_object(Bucket="bucket", Key="object_key", Body=b"seed object")
    raw.put_object(Bucket="bucket_name", Key="listed", Body=b"x")
    raw.put_object(Bucket="source_bucket", Key="source_object_key", Body=b"source bytes")
    init = next(c for t, c in SNIPPETS if t.startswith("Initialize"))
    namespace: dict[str, Any] = {"ObjectClerk": ObjectClerk}
    exec(repaired_init(init, ceph), namespace)
    clerk = namespace["clerk"]
    assert isinstance(clerk, ObjectClerk)
    assert clerk.retrier.policy.tries == 3
    if title.startswith("Initialize"):
        return
    if title.startswith("List Object"):
        listed = eval(code, namespace)  # the snippet is one expression: consume what it returns
        assert [entry["Key"] for entry in listed] == ["listed"]
        return
    exec(code, namespace)
    keys = {
        b: [o["Key"] for o in raw.list_objects_v2(Bucket=b).get("Contents", [])] for b in BUCKETS
    }
    if title.startswith("Get Object #"):
        assert namespace["bytes_response"] == b"seed object"
    elif title.startswith("Delete Object"):
        assert keys["bucket"] == []
    elif title.startswith("Get Object Info"):
        assert namespace["dict_response"]["content-length"] == str(len(b"seed object"))
    elif title.startswith("Copy Object"):
        assert keys["destination_bucket"] == ["destination_object_key"]
        assert keys["source_bucket"] == ["source_object_key"]
    elif title.startswith("Upload Object"):
        body = raw.get_object(Bucket="bucket", Key="object_key")["Body"].read()
        assert body == Path("file").read_bytes()
    elif title.startswith("Move Object"):
        assert keys["destination_bucket"] == ["destination_object_key"]
        assert keys["source_bucket"] == []
    else:
        pytest.fail(f"no check for snippet {title}")
