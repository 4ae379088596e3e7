"""Unit tests for object_clerk.etag: pure ETag maths, checked against hashlib and s3transfer."""

from __future__ import annotations

import hashlib
import io
import math
import random

import pytest
from s3transfer.utils import ChunksizeAdjuster

from object_clerk.etag import (
    EtagCalculator,
    PartLayout,
    adjust_chunksize,
    candidate_part_sizes,
    compute_etag,
    multipart_etag,
    parse_etag,
    plan_parts,
)

# Written out by hand so the tests do not depend on the module's own constants.
MIB = 1024 * 1024
FIVE_MIB = 5 * 1024 * 1024
FIVE_GIB = 5 * 1024 * 1024 * 1024
GIB = 1024 * MIB
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"  # md5(b"") as published everywhere


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _oracle_multipart(data: bytes, part_size: int) -> str:
    """Independent multipart ETag: md5 of the concatenated binary part digests, then -N."""
    digests = [
        hashlib.md5(data[i : i + part_size], usedforsecurity=False).digest()
        for i in range(0, len(data), part_size)
    ]
    return f"{_md5(b''.join(digests))}-{len(digests)}"


def _data(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


# --------------------------------------------------------------------------- parse_etag

HEX = "9e107d9d372bb6826bd81d3542a419d6"


def test_parse_etag_quoted_single_part():
    parsed = parse_etag(f'"{HEX}"')
    assert parsed is not None
    assert parsed.hexdigest == HEX
    assert parsed.parts is None
    assert not parsed.multipart


def test_parse_etag_unquoted_single_part():
    parsed = parse_etag(HEX)
    assert parsed is not None
    assert (parsed.hexdigest, parsed.parts) == (HEX, None)


def test_parse_etag_upper_case_hex_is_lowered():
    parsed = parse_etag(f'"{HEX.upper()}"')
    assert parsed is not None
    assert parsed.hexdigest == HEX


def test_parse_etag_multipart_suffix_gives_part_count():
    parsed = parse_etag(f'"{HEX}-17"')
    assert parsed is not None
    assert parsed.hexdigest == HEX
    assert parsed.parts == 17
    assert parsed.multipart
    assert str(parsed) == f"{HEX}-17"


def test_parse_etag_str_of_single_part_is_bare_hex():
    parsed = parse_etag(f'"{HEX.upper()}"')
    assert str(parsed) == HEX


@pytest.mark.parametrize(
    "etag",
    [
        None,
        "",
        "abc",
        '"abc"',
        HEX[:-1],  # 31 hex digits
        HEX + "0",  # 33 hex digits
        "z" * 32,  # right length, not hex
        f"{HEX}-",  # dangling dash
        f"{HEX}-x",
        f'W/"{HEX}"',  # weak ETag
    ],
)
def test_parse_etag_non_md5_shapes_give_none(etag):
    assert parse_etag(etag) is None


# ----------------------------------------------------------------------- multipart_etag


def test_multipart_etag_matches_hashlib_md5_of_concatenated_digests():
    parts = [b"alpha" * 100, b"beta" * 7, b"", b"\x00\xff" * 33]
    digests = [hashlib.md5(p, usedforsecurity=False).digest() for p in parts]
    expected = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest() + "-4"
    assert multipart_etag(digests) == expected


def test_multipart_etag_single_part_has_suffix_one():
    digest = hashlib.md5(b"x", usedforsecurity=False).digest()
    assert multipart_etag([digest]) == _md5(digest) + "-1"
    assert multipart_etag([digest]) != _md5(b"x")


def test_multipart_etag_accepts_a_generator():
    blobs = [b"a", b"b", b"c"]
    expected = _md5(b"".join(hashlib.md5(b, usedforsecurity=False).digest() for b in blobs))
    gen = (hashlib.md5(b, usedforsecurity=False).digest() for b in blobs)
    assert multipart_etag(gen) == expected + "-3"


# -------------------------------------------------------------------------- plan_parts


def test_plan_parts_below_threshold_is_single_part():
    layout = plan_parts(8 * MIB - 1, threshold=8 * MIB, chunksize=8 * MIB)
    assert not layout.multipart
    assert layout.part_size == 0
    assert layout.part_count == 1
    assert list(layout.parts()) == [(1, 0, 8 * MIB - 1)]


def test_plan_parts_at_threshold_is_multipart_like_s3transfer():
    layout = plan_parts(8 * MIB, threshold=8 * MIB, chunksize=8 * MIB)
    assert layout.multipart
    assert layout.part_size == 8 * MIB
    assert layout.part_count == 1


def test_plan_parts_threshold_under_5mib_gives_5mib_parts():
    layout = plan_parts(12 * MIB, threshold=1 * MIB, chunksize=1 * MIB)
    assert layout.multipart
    assert layout.part_size == 5 * 1024 * 1024
    assert layout.part_count == 3  # 5 + 5 + 2 MiB


def test_plan_parts_small_object_over_tiny_threshold_is_one_5mib_part():
    layout = plan_parts(2 * MIB, threshold=1 * MIB, chunksize=1 * MIB)
    assert layout.multipart
    assert layout.part_size == FIVE_MIB
    assert list(layout.parts()) == [(1, 0, 2 * MIB)]


def test_plan_parts_doubles_chunk_when_over_10000_parts():
    size = 100 * GIB  # 12,800 parts of 8 MiB: too many; 6,400 of 16 MiB fit
    layout = plan_parts(size, threshold=8 * MIB, chunksize=8 * MIB)
    assert layout.part_size == 16 * MIB
    assert layout.part_count == 6400
    assert layout.part_count <= 10_000


def test_plan_parts_exactly_10000_parts_is_not_doubled():
    size = 10_000 * 8 * MIB
    layout = plan_parts(size, threshold=8 * MIB, chunksize=8 * MIB)
    assert layout.part_size == 8 * MIB
    assert layout.part_count == 10_000


def test_plan_parts_one_byte_over_10000_parts_is_doubled():
    size = 10_000 * 8 * MIB + 1
    layout = plan_parts(size, threshold=8 * MIB, chunksize=8 * MIB)
    assert layout.part_size == 16 * MIB
    assert layout.part_count == 5001


def test_plan_parts_caps_part_size_at_5gib():
    layout = plan_parts(20 * GIB, threshold=8 * MIB, chunksize=6 * GIB)
    assert layout.part_size == FIVE_GIB
    assert layout.part_count == 4


def test_plan_parts_empty_object_is_one_empty_part():
    layout = plan_parts(0, threshold=1, chunksize=8 * MIB)
    assert not layout.multipart
    assert layout.part_count == 1
    assert list(layout.parts()) == [(1, 0, 0)]


@pytest.mark.parametrize(("size", "threshold"), [(-1, 1), (10, 0), (10, -5)])
def test_plan_parts_rejects_negative_size_and_non_positive_threshold(size, threshold):
    with pytest.raises(ValueError):
        plan_parts(size, threshold=threshold, chunksize=8 * MIB)


@pytest.mark.parametrize(
    ("size", "part_size"),
    [
        (1, 1),
        (10, 3),
        (12, 4),
        (12 * MIB + 7, FIVE_MIB),
        (FIVE_MIB, FIVE_MIB),
        (100 * GIB, 16 * MIB),
        (5 * 1024 * GIB, 525 * MIB),
    ],
)
def test_part_layout_parts_cover_the_object_exactly_without_gaps(size, part_size):
    parts = list(PartLayout(size, part_size).parts())
    assert [number for number, _, _ in parts] == list(range(1, len(parts) + 1))
    assert len(parts) == math.ceil(size / part_size)
    expected_offset = 0
    for _, offset, length in parts:
        assert offset == expected_offset
        assert 0 < length <= part_size
        expected_offset += length
    assert expected_offset == size
    assert all(length == part_size for _, _, length in parts[:-1])


# --------------------------------------------------------------------- adjust_chunksize

_CHUNKS = [1, 1024, MIB, FIVE_MIB - 1, FIVE_MIB, 8 * MIB, 15 * MIB, 100 * MIB, FIVE_GIB, 6 * GIB]
_SIZES = [
    None,
    0,
    1,
    FIVE_MIB,
    10_000 * 8 * MIB,
    10_000 * 8 * MIB + 1,
    100 * GIB,
    1024 * GIB,
    5 * 1024 * GIB,
    50 * 1024 * GIB,
]


@pytest.mark.parametrize("chunk", _CHUNKS)
def test_adjust_chunksize_matches_s3transfer_chunksize_adjuster(chunk):
    adjuster = ChunksizeAdjuster()
    for size in _SIZES:
        assert adjust_chunksize(chunk, size) == adjuster.adjust_chunksize(chunk, size), size


def test_adjust_chunksize_matches_s3transfer_on_random_grid():
    rng = random.Random(20240601)
    adjuster = ChunksizeAdjuster()
    for _ in range(500):
        chunk = rng.randint(1, 6 * GIB)
        size = rng.randint(0, 5 * 1024 * GIB)
        assert adjust_chunksize(chunk, size) == adjuster.adjust_chunksize(chunk, size)


@pytest.mark.parametrize("chunk", [0, -1])
def test_adjust_chunksize_rejects_non_positive_chunk(chunk):
    with pytest.raises(ValueError):
        adjust_chunksize(chunk, 10)


# ----------------------------------------------------------------- candidate_part_sizes


@pytest.mark.parametrize(
    ("size", "parts"),
    [
        (8 * MIB * 3 + 1234, 4),
        (15 * MIB * 2 + 10, 3),
        (100 * MIB, 7),
        (16 * MIB * 5, 5),
        (FIVE_MIB * 9 + 1, 10),
        (12345, 2),
        (1024 * MIB + 1, 65),
        (3, 2),
    ],
)
def test_candidate_part_sizes_all_give_exactly_the_part_count(size, parts):
    candidates = candidate_part_sizes(size, parts, limit=50)
    assert candidates, "a consistent layout exists, so a candidate must be found"
    for c in candidates:
        assert math.ceil(size / c) == parts, c
    assert len(set(candidates)) == len(candidates)


def test_candidate_part_sizes_aws_cli_8mib_layout_is_found_first():
    size = 8 * MIB * 3 + 1234  # three full 8 MiB parts and a short fourth
    candidates = candidate_part_sizes(size, 4)
    assert 8 * MIB in candidates
    assert candidates[0] == 8 * MIB


def test_candidate_part_sizes_s3cmd_15mib_layout_is_found():
    size = 15 * MIB * 2 + 10
    assert 15 * MIB in candidate_part_sizes(size, 3)


def test_candidate_part_sizes_5mib_minimum_layout_is_found():
    size = FIVE_MIB * 6 + 99
    assert FIVE_MIB in candidate_part_sizes(size, 7)


def test_candidate_part_sizes_16mib_layout_is_found():
    size = 16 * MIB * 4 + 1
    assert 16 * MIB in candidate_part_sizes(size, 5)


def test_candidate_part_sizes_common_sizes_appear_whenever_consistent():
    rng = random.Random(7)
    common = [8 * MIB, 15 * MIB, 16 * MIB, FIVE_MIB]
    for _ in range(300):
        size = rng.randint(1, 2 * GIB)
        parts = rng.randint(2, 400)
        candidates = candidate_part_sizes(size, parts)
        for c in candidates:
            assert math.ceil(size / c) == parts
        for c in common:
            if math.ceil(size / c) == parts:
                assert c in candidates, (size, parts, c)


def test_candidate_part_sizes_single_part_is_the_size():
    assert candidate_part_sizes(12345, 1) == [12345]


@pytest.mark.parametrize(("size", "parts"), [(10, 20), (0, 2), (10, 0), (10, -1), (-5, 2)])
def test_candidate_part_sizes_inconsistent_counts_give_empty_list(size, parts):
    assert candidate_part_sizes(size, parts) == []


def test_candidate_part_sizes_respects_limit():
    size = 1000 * MIB
    parts = 2  # any part size in [500 MiB, 1000 MiB) works: hundreds of candidates
    assert len(candidate_part_sizes(size, parts)) <= 8
    for limit in (1, 2, 3, 20):
        got = candidate_part_sizes(size, parts, limit=limit)
        assert len(got) == limit
        for c in got:
            assert math.ceil(size / c) == parts


def test_candidate_part_sizes_limit_one_keeps_the_likeliest():
    assert candidate_part_sizes(8 * MIB * 3 + 1234, 4, limit=1) == [8 * MIB]


# ---------------------------------------------------------------------- EtagCalculator


def _feed(calc: EtagCalculator, data: bytes, cuts: list[int]) -> str:
    previous = 0
    for cut in [*cuts, len(data)]:
        calc.update(data[previous:cut])
        previous = cut
    return calc.etag()


def _random_cuts(rng: random.Random, n: int, count: int) -> list[int]:
    return sorted(rng.randint(0, n) for _ in range(count))


@pytest.mark.parametrize("part_size", [1, 7, 64, 1000, 4096])
def test_etag_calculator_chunking_does_not_matter_small_parts(part_size):
    data = _data(5000, seed=part_size)
    expected = _oracle_multipart(data, part_size)
    one_byte = EtagCalculator(part_size)
    for i in range(len(data)):
        one_byte.update(data[i : i + 1])
    assert one_byte.etag() == expected
    seven = EtagCalculator(part_size)
    assert _feed(seven, data, list(range(7, len(data), 7))) == expected
    whole = EtagCalculator(part_size)
    whole.update(data)
    assert whole.etag() == expected
    for seed in range(5):
        calc = EtagCalculator(part_size)
        assert _feed(calc, data, _random_cuts(random.Random(seed), len(data), 40)) == expected


def test_etag_calculator_chunking_does_not_matter_5mib_parts():
    data = _data(12 * MIB + 321, seed=3)
    expected = _oracle_multipart(data, FIVE_MIB)
    assert expected.endswith("-3")
    whole = EtagCalculator(FIVE_MIB)
    whole.update(data)
    assert whole.etag() == expected
    assert whole.bytes_hashed == len(data)
    for seed in (11, 12):
        calc = EtagCalculator(FIVE_MIB)
        cuts = _random_cuts(random.Random(seed), len(data), 25)
        assert _feed(calc, data, cuts) == expected
    # Cuts exactly on part boundaries and one byte either side.
    calc = EtagCalculator(FIVE_MIB)
    boundary_cuts = [FIVE_MIB - 1, FIVE_MIB, FIVE_MIB + 1, 2 * FIVE_MIB, 2 * FIVE_MIB + 1]
    assert _feed(calc, data, boundary_cuts) == expected


def test_etag_calculator_data_exact_multiple_of_part_size_has_no_empty_extra_part():
    data = _data(4 * 1000, seed=9)
    calc = EtagCalculator(1000)
    calc.update(data)
    assert calc.etag() == _oracle_multipart(data, 1000)
    assert calc.etag().endswith("-4")
    assert len(calc.part_digests()) == 4


def test_etag_calculator_multipart_empty_input_is_one_empty_part():
    one_empty_part = hashlib.md5(b"", usedforsecurity=False).digest()
    expected = hashlib.md5(one_empty_part, usedforsecurity=False).hexdigest() + "-1"
    assert EtagCalculator(1000).etag() == expected


def test_etag_calculator_part_size_zero_is_plain_md5():
    data = _data(10_000, seed=4)
    calc = EtagCalculator(0)
    for cut in range(0, len(data), 333):
        calc.update(data[cut : cut + 333])
    assert calc.etag() == _md5(data)
    assert "-" not in calc.etag()


def test_etag_calculator_empty_input_is_empty_md5():
    assert EtagCalculator().etag() == EMPTY_MD5
    calc = EtagCalculator(0)
    calc.update(b"")
    assert calc.etag() == EMPTY_MD5
    assert calc.bytes_hashed == 0


def test_etag_calculator_accepts_bytearray_and_memoryview():
    data = _data(2500, seed=5)
    calc = EtagCalculator(1000)
    calc.update(bytearray(data[:1200]))
    calc.update(memoryview(data)[1200:])
    assert calc.etag() == _oracle_multipart(data, 1000)


def test_etag_calculator_rejects_negative_part_size():
    with pytest.raises(ValueError):
        EtagCalculator(-1)


# ------------------------------------------------------------------------- compute_etag


def test_compute_etag_bytes_below_threshold_is_plain_md5():
    data = _data(3 * MIB, seed=6)
    assert compute_etag(data, threshold=8 * MIB, chunksize=8 * MIB) == _md5(data)


def test_compute_etag_bytes_over_threshold_is_multipart():
    data = _data(12 * MIB + 5, seed=7)
    got = compute_etag(data, threshold=FIVE_MIB, chunksize=FIVE_MIB)
    assert got == _oracle_multipart(data, FIVE_MIB)
    assert got.endswith("-3")


def test_compute_etag_bytes_at_threshold_is_multipart():
    data = _data(FIVE_MIB, seed=8)
    got = compute_etag(data, threshold=FIVE_MIB, chunksize=FIVE_MIB)
    assert got == _oracle_multipart(data, FIVE_MIB)
    assert got.endswith("-1")


def test_compute_etag_tiny_threshold_uses_5mib_parts():
    data = _data(6 * MIB, seed=10)
    got = compute_etag(data, threshold=MIB, chunksize=MIB)
    assert got == _oracle_multipart(data, FIVE_MIB)
    assert got.endswith("-2")


def test_compute_etag_empty_bytes_is_empty_md5():
    assert compute_etag(b"", threshold=1, chunksize=FIVE_MIB) == EMPTY_MD5


@pytest.mark.parametrize("sized", [True, False])
def test_compute_etag_stream_matches_bytes(sized):
    data = _data(12 * MIB + 99, seed=12)
    expected = _oracle_multipart(data, FIVE_MIB)
    stream = io.BytesIO(data)
    size = len(data) if sized else None
    got = compute_etag(
        stream, threshold=FIVE_MIB, chunksize=FIVE_MIB, size=size, block_size=MIB + 17
    )
    assert got == expected


@pytest.mark.parametrize("sized", [True, False])
def test_compute_etag_small_stream_is_plain_md5(sized):
    data = _data(1000, seed=13)
    size = len(data) if sized else None
    got = compute_etag(io.BytesIO(data), threshold=8 * MIB, chunksize=8 * MIB, size=size)
    assert got == _md5(data)


@pytest.mark.parametrize("sized", [True, False])
def test_compute_etag_stream_hashes_from_current_position(sized):
    prefix = b"HEADER!!"  # 8 bytes the ETag must not include
    body = _data(4000, seed=14)
    stream = io.BytesIO(prefix + body)
    stream.seek(8)
    size = len(body) if sized else None
    got = compute_etag(stream, threshold=8 * MIB, chunksize=8 * MIB, size=size, block_size=100)
    assert got == _md5(body)
    assert got != _md5(prefix + body)


def test_compute_etag_multipart_stream_from_offset():
    prefix = b"12345678"
    body = _data(6 * MIB, seed=15)
    stream = io.BytesIO(prefix + body)
    stream.seek(8)
    got = compute_etag(stream, threshold=FIVE_MIB, chunksize=FIVE_MIB, size=len(body))
    assert got == _oracle_multipart(body, FIVE_MIB)


def test_compute_etag_unsized_stream_at_threshold_is_multipart():
    data = _data(FIVE_MIB, seed=16)
    got = compute_etag(io.BytesIO(data), threshold=FIVE_MIB, chunksize=FIVE_MIB)
    assert got == _oracle_multipart(data, FIVE_MIB)
    assert got.endswith("-1")


@pytest.mark.parametrize("sized", [True, False])
def test_compute_etag_stream_with_tiny_chunksize_uses_5mib_parts(sized):
    data = _data(6 * MIB, seed=17)
    size = len(data) if sized else None
    got = compute_etag(io.BytesIO(data), threshold=MIB, chunksize=MIB, size=size)
    assert got == _oracle_multipart(data, FIVE_MIB)
    assert got.endswith("-2")
