"""The verification policy: one pure function decides what proves an object's bytes.

Strategy: every place that moves bytes (PutObject, UploadPart, CompleteMultipartUpload,
CopyObject, UploadPartCopy, GetObject) gathers its *evidence* (the request's arguments and
the response's headers), the server's ETag and what the clerk computed, and asks
:func:`judge`. Nothing else in the package decides whether an ETag is an MD5, so a new
encryption mode or store quirk is taught here once.

The verdicts, weakest proof last:

* ``"md5"``: the object's ETag equals the MD5 of the bytes;
* ``"multipart-md5"``: its ETag equals the MD5-of-MD5s of the parts;
* ``"content-md5"``: the server checked every body against the Content-MD5 sent with it,
  but its ETag is not an MD5 (SSE-KMS, SSE-C), so the ETag cannot add to that;
* ``"crc64nvme"``, ``"crc32c"``, ``"crc32"``: a read whose response carried the object's
  full-object checksum (:mod:`object_clerk.checksums`) was checked with it, not the ETag;
  or an upload whose ETag is no MD5 (SSE-KMS, SSE-C) got back the checksum it sent;
* ``"unverifiable"``: nothing could prove the content; ``reason`` says why;
* ``"skipped"``: the caller turned verification off.

A comparison that fails is a verdict too (``matched`` is False): the caller raises it as a
:class:`~object_clerk.ChecksumMismatchError`. No I/O happens here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from object_clerk.checksums import Crc, CrcState
from object_clerk.errors import ChecksumMismatchError
from object_clerk.etag import EtagCalculator, ParsedEtag, multipart_etag, parse_etag

__all__ = [
    "OPAQUE_SSE",
    "VERIFIED",
    "ObjectLayout",
    "ReadVerifier",
    "Verdict",
    "Verification",
    "etag_opacity",
    "judge",
    "settle_suspect",
]

Verification = Literal[
    "md5",
    "multipart-md5",
    "content-md5",
    "crc64nvme",
    "crc32c",
    "crc32",
    "unverifiable",
    "skipped",
]

#: The verdicts that prove the stored or read bytes.
VERIFIED: frozenset[Verification] = frozenset(
    {"md5", "multipart-md5", "content-md5", "crc64nvme", "crc32c", "crc32"}
)

#: Server-side encryption that makes the ETag something other than an MD5 of the content.
OPAQUE_SSE = frozenset({"aws:kms", "aws:kms:dsse"})
# Fields that say a customer key (SSE-C) encrypts the object, or a copy's source.
_SSE_C_FIELDS = (
    "SSECustomerAlgorithm",
    "SSECustomerKey",
    "CopySourceSSECustomerAlgorithm",
    "CopySourceSSECustomerKey",
)


@dataclass(frozen=True)
class Verdict:
    """What proves (or failed to prove) a transfer's bytes.

    ``expected`` is the server's ETag (without quotes) or stored checksum, and ``actual``
    what the clerk computed or sent; ``matched`` is False only when a comparison was made and
    failed. ``suspect``: no
    guessed part layout reproduces the ETag, so either the object's layout is none of the
    candidates or the bytes are damaged. Reading again tells which: the same bytes again
    mean an unknown layout, other bytes mean damage (see :func:`settle_suspect`).
    """

    kind: Verification
    reason: str = ""
    expected: str | None = None
    actual: str | None = None
    matched: bool = True
    suspect: bool = False

    @property
    def verified(self) -> bool:
        return self.matched and self.kind in VERIFIED

    def mismatch(
        self, message: str, *, operation: str, bucket: str | None, key: str | None
    ) -> ChecksumMismatchError:
        """The error to raise for a failed comparison."""
        return ChecksumMismatchError(
            message,
            expected=self.expected,
            actual=self.actual,
            algorithm=self.kind,
            operation=operation,
            bucket=bucket,
            key=key,
        )


def etag_opacity(evidence: Iterable[Mapping[str, Any]]) -> str | None:
    """Why an ETag described by this evidence cannot be an MD5 of the content, or None.

    ``evidence`` holds the request's arguments and the responses' fields (boto3 names): the
    encryption asked for and the encryption the server reports both count, since a bucket's
    default encryption applies without being asked for.
    """
    for fields in evidence:
        sse = fields.get("ServerSideEncryption")
        if sse in OPAQUE_SSE:
            return f"the object is encrypted with {sse}, so its ETag is not an MD5 of its content"
        if any(fields.get(name) for name in _SSE_C_FIELDS):
            return "the object is encrypted with a customer key (SSE-C), so its ETag is not an MD5"
    return None


def judge(
    *,
    verify: bool,
    etag: str | None,
    computed: Sequence[str] = (),
    evidence: Iterable[Mapping[str, Any]] = (),
    content_md5: bool = False,
    authoritative: bool = True,
    unknown: str = "",
    checksum: tuple[Crc, str, str] | None = None,
) -> Verdict:
    """The verdict on one transfer.

    Args:
        verify: False when the caller turned verification off.
        etag: the ETag the server holds for the bytes (quoted or not).
        computed: the ETag(s) the clerk computed for them: one for a known layout, several
            for candidate layouts (any may match). Empty: nothing could be computed, and
            ``unknown`` says why.
        evidence: the request's arguments and the response's fields, for
            :func:`etag_opacity`.
        content_md5: every body was sent with its Content-MD5, so a store that answered
            accepted exactly those bytes.
        authoritative: the layout behind ``computed`` is known, not guessed: a failed
            comparison is then a mismatch, not merely unverifiable.
        checksum: an upload's full-object CRC as (algorithm, sent, stored), when the store
            answered with the one it keeps: a difference is a mismatch, and where the ETag
            is no MD5 an equal one is the proof.
    """
    if not verify:
        return Verdict("skipped", "verification was turned off")
    if checksum is not None:
        crc, sent, stored = checksum
        if stored != sent:
            return Verdict(crc.name, expected=stored, actual=sent, matched=False)
        by_etag = judge(
            verify=True,
            etag=etag,
            computed=computed,
            evidence=evidence,
            content_md5=content_md5,
            authoritative=authoritative,
            unknown=unknown,
        )
        if by_etag.matched and by_etag.kind in ("content-md5", "unverifiable"):
            return Verdict(crc.name, expected=stored, actual=sent)
        return by_etag
    parsed = parse_etag(etag)
    reason = etag_opacity(evidence)
    if reason is None and parsed is None:
        reason = f"the ETag {etag!r} is not an MD5"
    if reason is not None:
        return Verdict("content-md5" if content_md5 else "unverifiable", reason)
    assert parsed is not None
    kind: Verification = "multipart-md5" if parsed.multipart else "md5"
    if not computed:
        return Verdict("unverifiable", unknown or "the object's part layout is unknown")
    expected = str(parsed)
    if expected in computed:
        return Verdict(kind, expected=expected, actual=expected)
    if not authoritative:
        return Verdict(
            "unverifiable",
            f"the part layout is unknown and no candidate reproduces ETag {expected}",
            expected=expected,
            actual=computed[0],
            suspect=True,
        )
    return Verdict(kind, expected=expected, actual=computed[0], matched=False)


def settle_suspect(verdict: Verdict, earlier: str | None) -> Verdict:
    """The verdict on a suspect read (see :attr:`Verdict.suspect`), given what an earlier
    read of the same version computed (None: this is the first read). A first suspect read
    comes back as a mismatch, to be read again; one that computed what the earlier one did
    read the same bytes twice, so its layout is unknown, not its bytes damaged: unverifiable.
    """
    if not verdict.suspect or verdict.actual == earlier:
        return verdict
    return Verdict(
        "multipart-md5",
        "no candidate part layout reproduces the ETag: reading again, to tell damaged bytes"
        " from an unknown layout",
        expected=verdict.expected,
        actual=verdict.actual,
        matched=False,
        suspect=True,
    )


@dataclass(frozen=True)
class ObjectLayout:
    """The part layout of a stored object and how sure we are of it.

    ``part_sizes`` holds one size when the layout is known (``authoritative``), or several
    candidates, likeliest first, when it was guessed. ``part_sizes == (0,)``: single-part.
    ``checksum``: the object's full-object CRC and its expected value, which proves the
    bytes whatever the layout; ``etag`` is then None when the ETag is no MD5.
    """

    size: int
    etag: ParsedEtag | None
    part_sizes: tuple[int, ...]
    authoritative: bool
    source: str
    checksum: tuple[Crc, str] | None = None


class PartHasher(Protocol):
    """What hashes one part read in parallel: an MD5, or a running CRC."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class ReadVerifier:
    """Checks the bytes of one read against the ETag (or the full-object checksum) of the
    response they came with.

    Free of I/O and threads (h11's style): feed it the bytes in order with :meth:`update`,
    or hash parts read in parallel with :meth:`part_hasher` and hand the hashers back in
    order with :meth:`set_parts`, then ask :meth:`verdict`. ``layout`` is None when
    verification is off, or the reason the ETag cannot prove the content.
    """

    def __init__(self, layout: ObjectLayout | str | None, *, verify: bool) -> None:
        self.layout = layout
        self.verify = verify
        known = layout if verify and isinstance(layout, ObjectLayout) else None
        self._crc = CrcState(known.checksum[0]) if known and known.checksum else None
        self._calculators = (
            [EtagCalculator(size) for size in known.part_sizes] if known and not self._crc else []
        )
        self._parts: list[PartHasher] | None = None

    @property
    def parallel_parts(self) -> bool:
        """Whether parts read in parallel can be verified: a known layout (their MD5s make
        the ETag) or a checksum whose part CRCs combine."""
        layout = self.layout
        if not isinstance(layout, ObjectLayout):
            return not self.verify
        if layout.checksum is not None:
            return layout.checksum[0].combine is not None
        return layout.authoritative and layout.etag is not None and (layout.etag.parts or 0) > 1

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._crc is not None:
            self._crc.update(chunk)
        for calculator in self._calculators:
            calculator.update(chunk)

    def part_hasher(self) -> PartHasher:
        """A hasher for one part read in parallel (``update(chunk)``)."""
        if self._crc is not None:
            return CrcState(self._crc.crc)
        return hashlib.md5(usedforsecurity=False)

    def set_parts(self, hashers: list[PartHasher]) -> None:
        """The parts' hashers, in order (see :meth:`part_hasher`)."""
        self._parts = hashers

    def verdict(self) -> Verdict:
        layout = self.layout
        if not self.verify:
            return judge(verify=False, etag=None)
        if not isinstance(layout, ObjectLayout):
            return Verdict("unverifiable", layout or "the object's ETag cannot prove it")
        if layout.checksum is not None and self._crc is not None:
            crc, expected = layout.checksum
            total = self._crc
            if self._parts is not None:
                total = CrcState(crc)
                for part in self._parts:
                    assert isinstance(part, CrcState)
                    total.then(part)
            actual = total.encoded()
            return Verdict(
                crc.name,
                expected=expected,
                actual=actual,
                matched=actual == expected,
            )
        if self._parts is not None:
            computed = [multipart_etag(part.digest() for part in self._parts)]
        else:
            computed = [calculator.etag() for calculator in self._calculators]
        return judge(
            verify=True,
            etag=str(layout.etag),
            computed=computed,
            authoritative=layout.authoritative,
        )
