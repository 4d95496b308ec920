"""Cutting files into blocks of whole lines: every line exactly once, numbered as `for line in file` does,
in blocks of the sizes asked."""

from __future__ import annotations

import random

import pytest

from flywheel.ingest.loader import _byte_range_blocks


@pytest.mark.parametrize("seed", range(200))
def test_byte_range_blocks_cover_every_line_once_from_any_resume_point(tmp_path, seed):
    rng = random.Random(seed)
    lines = [bytes(rng.choice(b"ab{}\r") for _ in range(rng.randint(0, 6))) for _ in range(rng.randint(0, 40))]
    ends_with_newline = rng.random() < 0.7 or not lines
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if ends_with_newline else b""))
    with path.open("rb") as handle:
        # A line's end is LF or CR LF, as `bytes.splitlines` would not have it (a CR alone ends no line).
        expected = [line.removesuffix(b"\n").removesuffix(b"\r") for line in handle]
    skip = rng.randint(0, len(expected))
    sizes = [rng.randint(1, 7) for _ in range(len(expected) + 1)]

    seen, next_line = [], skip + 1
    blocks = list(_byte_range_blocks(path, skip, iter(sizes), chunk=rng.randint(1, 9)))
    for index, block in enumerate(blocks):
        assert block.first_line == next_line
        got = [bytes(line) for line in block.read()]
        last = index == len(blocks) - 1
        assert 0 < len(got) <= sizes[index] if last else len(got) == sizes[index]
        seen += got
        next_line += len(got)
    assert seen == expected[skip:]
