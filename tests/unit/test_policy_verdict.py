"""The one verification policy (object_clerk.verdict): evidence in, verdict out."""

from __future__ import annotations

import hashlib
import os
import zlib

import pytest

from object_clerk import ChecksumMismatchError, checksums
from object_clerk.etag import EtagCalculator, MiB, multipart_etag, parse_etag
from object_clerk.verdict import ObjectLayout, ReadVerifier, etag_opacity, judge

MD5 = hashlib.md5(b"hello", usedforsecurity=False).hexdigest()


def test_md5_match_and_mismatch() -> None:
    """A single-part ETag equal to the computed MD5 is "md5"; any other is a mismatch that
    carries both values."""
    assert judge(verify=True, etag=f'"{MD5}"', computed=[MD5]).verified
    verdict = judge(verify=True, etag="0" * 32, computed=[MD5])
    assert (verdict.kind, verdict.matched, verdict.expected, verdict.actual) == (
        "md5",
        False,
        "0" * 32,
        MD5,
    )
    error = verdict.mismatch("bad", operation="PutObject", bucket="b", key="k")
    assert isinstance(error, ChecksumMismatchError)
    assert (error.expected, error.actual, error.algorithm) == ("0" * 32, MD5, "md5")


def test_multipart_kind_comes_from_the_etag() -> None:
    etag = multipart_etag([hashlib.md5(b"a").digest(), hashlib.md5(b"b").digest()])
    assert judge(verify=True, etag=etag, computed=[etag]).kind == "multipart-md5"


@pytest.mark.parametrize(
    "evidence",
    [
        {"ServerSideEncryption": "aws:kms"},
        {"ServerSideEncryption": "aws:kms:dsse"},
        {"SSECustomerAlgorithm": "AES256"},
        {"SSECustomerKey": "k" * 32},
    ],
)
def test_encrypted_etag_is_never_a_mismatch(evidence: dict[str, str]) -> None:
    """SSE-KMS and SSE-C ETags are not MD5s, whether the request asked for the encryption
    or the response reports it: "content-md5" when Content-MD5 was sent, else
    "unverifiable" — never a mismatch."""
    wrong = "f" * 32
    for where in ([evidence, {}], [{}, evidence]):
        sent = judge(verify=True, etag=wrong, computed=[MD5], evidence=where, content_md5=True)
        assert (sent.kind, sent.matched, sent.verified) == ("content-md5", True, True)
        unsent = judge(verify=True, etag=wrong, computed=[MD5], evidence=where)
        assert (unsent.kind, unsent.matched, unsent.verified) == ("unverifiable", True, False)
        assert "encrypted" in unsent.reason


def test_sse_s3_etag_is_an_md5() -> None:
    verdict = judge(
        verify=True, etag=MD5, computed=[MD5], evidence=[{"ServerSideEncryption": "AES256"}]
    )
    assert verdict.kind == "md5"
    assert etag_opacity([{"ServerSideEncryption": "AES256"}]) is None


def test_non_md5_etag_and_unknown_layout_are_unverifiable() -> None:
    assert judge(verify=True, etag="not-an-md5", computed=[MD5]).kind == "unverifiable"
    unknown = judge(verify=True, etag=f"{MD5}-3", computed=[], unknown="layout unknown")
    assert (unknown.kind, unknown.reason) == ("unverifiable", "layout unknown")


def test_guessed_layout_that_matches_nothing_is_unverifiable_not_corrupt() -> None:
    verdict = judge(verify=True, etag=f"{MD5}-3", computed=["a" * 32 + "-3"], authoritative=False)
    assert (verdict.kind, verdict.matched) == ("unverifiable", True)


def test_verify_off_is_skipped() -> None:
    verdict = judge(verify=False, etag="0" * 32, computed=[MD5])
    assert (verdict.kind, verdict.verified) == ("skipped", False)


def _layout(data: bytes, part_size: int, *, authoritative: bool = True) -> ObjectLayout:
    calculator = EtagCalculator(part_size)
    calculator.update(data)
    etag = parse_etag(calculator.etag())
    assert etag is not None
    return ObjectLayout(len(data), etag, (part_size,), authoritative, "test")


def test_read_verifier_sequential_and_parallel() -> None:
    """The read verifier proves bytes fed in any chunking, and part digests fed whole."""
    data = bytes(range(256)) * (5 * MiB // 256 * 3 // 2)
    layout = _layout(data, 5 * MiB)
    verifier = ReadVerifier(layout, verify=True)
    for start in range(0, len(data), 777_777):
        verifier.update(data[start : start + 777_777])
    assert verifier.verdict().kind == "multipart-md5"
    parallel = ReadVerifier(layout, verify=True)
    assert parallel.parallel_parts
    hashers = []
    for i in range(0, len(data), 5 * MiB):
        hashers.append(parallel.part_hasher())
        hashers[-1].update(data[i : i + 5 * MiB])
    parallel.set_parts(hashers)
    assert parallel.verdict().verified
    damaged = ReadVerifier(layout, verify=True)
    damaged.update(data[:-1] + b"\0")
    assert not damaged.verdict().matched


def test_read_verifier_reasons() -> None:
    assert ReadVerifier("encrypted", verify=True).verdict().reason == "encrypted"
    assert ReadVerifier(None, verify=False).verdict().kind == "skipped"


def _crc_layout(data: bytes, name: str) -> ObjectLayout:
    crc = checksums.ALGORITHMS[name]
    response = {crc.field: crc.encode(crc.update(data, 0)), "ChecksumType": "FULL_OBJECT"}
    found = checksums.full_object_checksum(response)
    assert found is not None
    return ObjectLayout(len(data), None, (0,), True, "test", found)


@pytest.mark.parametrize("name", sorted(checksums.ALGORITHMS))
def test_read_verifier_full_object_checksum(name: str) -> None:
    """A full-object CRC proves bytes fed in order, or parts read apart and combined, and
    names itself in the verdict; one flipped byte fails it."""
    data = os.urandom(3 * MiB + 5)
    layout = _crc_layout(data, name)
    verifier = ReadVerifier(layout, verify=True)
    for start in range(0, len(data), 333_333):
        verifier.update(data[start : start + 333_333])
    verdict = verifier.verdict()
    assert (verdict.kind, verdict.verified) == (name, True)
    damaged = ReadVerifier(layout, verify=True)
    damaged.update(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    assert not damaged.verdict().matched
    assert damaged.verdict().kind == name
    parallel = ReadVerifier(layout, verify=True)
    if not parallel.parallel_parts:  # zlib's CRC32 has no combine: read in order
        assert checksums.ALGORITHMS[name].combine is None
        return
    hashers = []
    for start in range(0, len(data), MiB):
        hashers.append(parallel.part_hasher())
        hashers[-1].update(data[start : start + MiB])
    parallel.set_parts(hashers)
    assert parallel.verdict().verified


def test_only_full_object_checksums_prove_a_read() -> None:
    crc = checksums.ALGORITHMS["crc32"]
    value = crc.encode(crc.update(b"abc", 0))
    assert checksums.full_object_checksum({crc.field: value}) == (crc, value)
    assert checksums.full_object_checksum({crc.field: value, "ChecksumType": "COMPOSITE"}) is None
    assert checksums.full_object_checksum({crc.field: f"{value}-3"}) is None  # composite
    assert checksums.full_object_checksum({"ChecksumSHA256": "x" * 44}) is None  # not a CRC


def test_an_uploads_returned_checksum_must_equal_the_one_sent() -> None:
    """A stored CRC that differs is a mismatch whatever the ETag says; an equal one proves
    an upload whose ETag is no MD5, and leaves an MD5 ETag's verdict as it is."""
    crc = checksums.ALGORITHMS["crc32"]
    sent, other = crc.of(b"abc"), crc.of(b"abd")
    md5 = hashlib.md5(b"abc").hexdigest()
    wrong = judge(verify=True, etag=md5, computed=[md5], checksum=(crc, sent, other))
    assert (wrong.kind, wrong.matched) == ("crc32", False)
    assert (wrong.expected, wrong.actual) == (other, sent)
    assert judge(verify=True, etag=md5, computed=[md5], checksum=(crc, sent, sent)).kind == "md5"
    kms = [{"ServerSideEncryption": "aws:kms"}]
    opaque = judge(verify=True, etag="x" * 32, evidence=kms, content_md5=True)
    assert opaque.kind == "content-md5"
    proven = judge(
        verify=True, etag="x" * 32, evidence=kms, content_md5=True, checksum=(crc, sent, sent)
    )
    assert (proven.kind, proven.verified) == ("crc32", True)
    assert judge(verify=False, etag=md5, checksum=(crc, sent, other)).kind == "skipped"


@pytest.mark.parametrize("combine", [True, False])
def test_appending_parts_gives_the_whole_objects_crc(combine: bool) -> None:
    """Part CRCs appended in order (combined, or hashed again without ``combine``) give
    the whole content's CRC."""
    crc = checksums.ALGORITHMS["crc32"]
    if not combine:
        crc = checksums.Crc("crc32", crc.field, crc.width, zlib.crc32, None)
    elif crc.combine is None:
        pytest.skip("this install has no CRC combine (awscrt)")
    data = os.urandom(3 * MiB + 7)
    whole = checksums.CrcState(crc)
    for start in range(0, len(data), MiB):
        part = checksums.CrcState(crc)
        part.update(data[start : start + MiB])
        whole.append(part, data[start : start + MiB])
    assert whole.encoded() == crc.of(data) == checksums.ALGORITHMS["crc32"].of(data)
    assert whole.length == len(data)
