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


def test_blocks_cut_in_a_thread_arrive_in_order_and_errors_reach_the_reader():
    from flywheel.ingest.loader import _prefetched

    assert list(_prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise OSError("disk gone")

    reader = _prefetched(failing(), depth=2)
    assert next(reader) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(reader)


def test_a_reader_that_stops_early_stops_the_thread_cutting_blocks():
    import threading

    from flywheel.ingest.loader import _prefetched

    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    reader = _prefetched(endless(), depth=2)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()  # the consumer's finally: stop and join the producer
    assert not any(thread.name == "ingest-cutter" for thread in threading.enumerate())
    assert len(produced) <= 3 + 2 + 1  # never more than `depth` ahead


def test_blocks_shared_by_workers_shrink_toward_the_end_and_still_cover_every_line(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"".join(b'{"n":%d}\n' % i for i in range(10_000)))
    sizes = [len(list(block.read())) for block in _byte_range_blocks(path, 0, iter([1_000] * 100), chunk=4096,
                                                                      shared_by=2)]
    assert sum(sizes) == 10_000
    assert sizes == sorted(sizes, reverse=True) and sizes[:4] == [1_000] * 4
    # The last blocks are about half of what is left (two workers), down to an eighth of the size asked.
    assert sizes[-4:-1] == [506, 250, 125] and sizes[-1] <= 125
