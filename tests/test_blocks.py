"""Cutting files into blocks of whole lines: every line exactly once, numbered as `for line in file` does."""

from __future__ import annotations

import random

import pytest

from flywheel.ingest.loader import _byte_range_blocks


@pytest.mark.parametrize("seed", range(200))
def test_byte_range_blocks_cover_every_line_once_from_any_resume_point(tmp_path, seed):
    rng = random.Random(seed)
    lines = [bytes(rng.choice(b"ab{}") for _ in range(rng.randint(0, 6))) for _ in range(rng.randint(0, 40))]
    ends_with_newline = rng.random() < 0.7 or not lines
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if ends_with_newline else b""))
    with path.open("rb") as handle:
        expected = [line.rstrip(b"\n") for line in handle]
    skip, block_lines = rng.randint(0, len(expected)), rng.randint(1, 7)

    seen, next_line = [], skip + 1
    for block in _byte_range_blocks(path, skip, block_lines, chunk=rng.randint(1, 9)):
        assert block.first_line == next_line
        got = block.read()
        assert 0 < len(got) <= block_lines
        seen += got
        next_line += len(got)
    assert seen == expected[skip:]
