"""Near-duplicate clusters: found across every day at once, stable ids, the same whatever order days were built in."""

from __future__ import annotations

from datetime import date

import numpy as np

from flywheel.dedup import DedupConfig, MinHasher, build_clusters, cluster, jaccard
from flywheel.ingest import ingest_file
from flywheel.reference import write_model_prices
from flywheel.sqlmodels import load_models, materialize
from tests.factories import interaction, write_lines

BASE = ("Our quarterly report shows revenue grew twelve percent while costs stayed flat across all regions and "
        "the team expects similar growth next quarter if hiring continues as planned")


def variant(n: int) -> str:
    words = BASE.split()
    words[n % len(words)] = words[n % len(words)].upper() + "!"  # case and punctuation are normalized away
    return " ".join(words)


def test_near_duplicates_share_a_cluster_and_different_texts_do_not():
    texts = [BASE, variant(3), BASE + " thanks", "A completely different question about the weather in Paris today",
             "A completely different question about the weather in Paris today?", "hello", ""]
    hasher = MinHasher()
    signatures, sets = hasher.sketch(texts)
    ids = [f"t{i}" for i in range(len(texts))]
    roots = cluster(ids, signatures, hasher, sets)
    assert roots["t0"] == roots["t1"] == roots["t2"]
    assert roots["t3"] == roots["t4"] != roots["t0"]
    assert len({roots["t5"], roots["t6"], roots["t0"]}) == 3
    # the estimate agrees with exact Jaccard on what it decided
    assert jaccard(sets[0], sets[2]) >= 0.8 > jaccard(sets[0], sets[3])


def test_a_stricter_threshold_splits_what_a_looser_one_joins():
    texts = [BASE, BASE + " and more words appended to the end of it to lower the overlap further"]
    loose, strict = MinHasher(DedupConfig(threshold=0.5)), MinHasher(DedupConfig(threshold=0.95))
    for hasher, together in ((loose, True), (strict, False)):
        signatures, sets = hasher.sketch(texts)
        roots = cluster(["a", "b"], signatures, hasher, sets)
        assert (roots["a"] == roots["b"]) is together


def _stage(con, tmp_path, day: str, events: list[dict]) -> date:
    ingest_file(con, write_lines(tmp_path / f"{day}.jsonl", events))
    write_model_prices(con)
    (staging,) = [m for m in load_models()
                  if m.relation == "staging.stg_interactions"]
    when = date.fromisoformat(day)
    materialize(con, staging, when)
    return when


def ask(request_id: str, day: str, text: str, minute: int = 0) -> dict:
    return interaction(request_id, timestamp=f"{day}T10:{minute:02d}:00Z",
                       messages=[{"role": "user", "content": text}])


def clusters(con) -> dict[str, str]:
    return dict(con.execute("SELECT request_id, cluster_id FROM dedup.clusters").fetchall())


def test_a_new_day_joins_earlier_clusters_and_ids_stay_stable(con, tmp_path):
    hasher = MinHasher()
    _stage(con, tmp_path, "2026-11-20", [ask("a1", "2026-11-20", BASE), ask("b1", "2026-11-20", "unrelated " * 9)])
    result = build_clusters(con, hasher)
    assert (result.interactions, result.clusters) == (2, 2)
    _stage(con, tmp_path, "2026-11-21", [ask("a2", "2026-11-21", variant(5)), ask("c2", "2026-11-21", "new " * 9)])
    result = build_clusters(con, hasher)
    assert (result.interactions, result.clusters, result.multi_member_clusters) == (4, 3, 1)
    assert clusters(con) == {"a1": "a1", "b1": "b1", "a2": "a1", "c2": "c2"}


def test_a_day_that_links_two_earlier_clusters_merges_them_into_the_older(con, tmp_path):
    hasher = MinHasher(DedupConfig(threshold=0.5))  # head ~ BASE 0.56, tail ~ BASE 0.6, head ~ tail 0.16
    head, tail = BASE.split()[:18], BASE.split()[10:]
    _stage(con, tmp_path, "2026-11-20", [ask("x1", "2026-11-20", " ".join(head))])
    _stage(con, tmp_path, "2026-11-21", [ask("y2", "2026-11-21", " ".join(tail))])
    build_clusters(con, hasher)
    assert clusters(con) == {"x1": "x1", "y2": "y2"}
    _stage(con, tmp_path, "2026-11-22", [ask("z3", "2026-11-22", BASE)])
    build_clusters(con, hasher)
    assert clusters(con) == {"x1": "x1", "y2": "x1", "z3": "x1"}


def test_rebuilding_changes_nothing_and_the_earliest_member_names_the_cluster(con, tmp_path):
    hasher = MinHasher()
    _stage(con, tmp_path, "2026-11-20", [ask(f"r{i}", "2026-11-20", variant(i), i) for i in range(6)])
    build_clusters(con, hasher)
    before = sorted(clusters(con).items())
    build_clusters(con, hasher)
    assert sorted(clusters(con).items()) == before
    assert {c for _, c in before} == {"r0"}


def test_clusters_do_not_depend_on_the_order_days_were_staged_in(con, tmp_path, home):
    from flywheel import warehouse
    from flywheel.ingest import raw_layer
    from flywheel.settings import Home

    def text(d: int, i: int) -> str:
        return variant(i + d) if i % 2 else f"topic {d} {i} " * 4

    days = {f"2026-11-{20 + d}": [ask(f"d{d}-{i}", f"2026-11-{20 + d}", text(d, i), minute=i) for i in range(8)]
            for d in range(4)}
    hasher = MinHasher(DedupConfig(threshold=0.6))
    results = []
    for n, order in enumerate((sorted(days), sorted(days, reverse=True))):
        connection = con if n == 0 else warehouse.connect(Home(home.root / "other"))
        raw_layer.ensure_raw_layer(connection)
        for day in order:
            _stage(connection, tmp_path / str(n), day, days[day])
            build_clusters(connection, hasher)  # after every day, as daily builds would
        results.append(sorted(clusters(connection).items()))
    assert results[0] == results[1]
    assert len({c for _, c in results[0]}) < 32  # the variants did cluster across days


def test_an_interaction_without_prompt_text_is_a_cluster_of_its_own(con, tmp_path):
    _stage(con, tmp_path, "2026-11-20", [
        interaction(f"e{i}", timestamp="2026-11-20T10:00:00Z", messages=[{"role": "system", "content": "be brief"}])
        for i in range(3)])
    build_clusters(con, MinHasher())
    assert clusters(con) == {"e0": "e0", "e1": "e1", "e2": "e2"}


def test_signatures_are_deterministic_and_need_a_power_of_two_bins():
    a = MinHasher().signatures([BASE, "x y z"])
    assert np.array_equal(a, MinHasher().signatures([BASE, "x y z"]))
    assert a.shape == (2, 128) and a.dtype == np.uint32


def test_threads_give_the_same_signatures_and_sets_as_one_thread():
    texts = [variant(i) for i in range(300)] + ["", None, "one", "two words"]
    one, sets_one = MinHasher().sketch(texts, chunk_docs=1000)
    many, sets_many = MinHasher().sketch(texts, chunk_docs=1000, workers=3)
    assert np.array_equal(one, many)
    assert all(np.array_equal(a, b) for a, b in zip(sets_one, sets_many, strict=True))
