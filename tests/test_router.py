"""The router: metrics on hand-computed cases, training and evaluation on a published release, routing through
the capture wrapper, and eval sets that stand in for the workload."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import openai
import pytest

from flywheel import evalsets
from flywheel.capture import EventSink, capture
from flywheel.router import metrics
from flywheel.settings import Home
from tests.support.arithmetic import MODELS, ask, published_home
from tests.test_cli import run_cli


# -- metrics, by hand ----------------------------------------------------------------------------------------------
def test_the_hull_keeps_the_concave_frontier_and_drops_dominated_points():
    costs = np.array([1.0, 2.0, 3.0, 4.0, 2.5])
    quality = np.array([0.5, 0.6, 0.9, 0.95, 0.55])
    hull = metrics.upper_hull(costs, quality)
    # (2, 0.6) lies under the chord from (1, 0.5) to (3, 0.9); (2.5, 0.55) is dominated
    assert hull.tolist() == [[1.0, 0.5], [3.0, 0.9], [4.0, 0.95]]
    assert metrics.quality_at(hull, 2.0) == pytest.approx(0.7)
    assert np.isnan(metrics.quality_at(hull, 0.5))
    assert metrics.quality_at(hull, 10.0) == pytest.approx(0.95)
    assert metrics.cost_to_reach(hull, 0.8) == pytest.approx(2.5)
    assert metrics.cost_to_reach(hull, 0.99) is None
    # mean quality over [1, 4]: trapezoids (0.5+0.9)/2*2 + (0.9+0.95)/2*1 = 1.4 + 0.925, over 3
    assert metrics.aiq(hull, 1.0, 4.0) == pytest.approx((1.4 + 0.925) / 3, abs=1e-4)


def test_gap_recovered_apgr_and_cpt_on_four_prompts():
    weak = np.array([1, 0, 0, 1])
    strong = np.array([1, 1, 1, 1])
    preference = np.array([0.1, 0.9, 0.8, 0.2])  # the router wants the strong model for prompts 1 and 2
    pgr = metrics.gap_recovered(preference, weak, strong)
    # gap 0.5 -> 1.0; sending prompt 1, then 2 recovers it all in two of four calls
    assert pgr.tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0])
    assert metrics.cpt(pgr, 0.5) == pytest.approx(0.25)
    assert metrics.cpt(pgr, 0.95) == pytest.approx(0.5)
    assert metrics.apgr(pgr) == pytest.approx((0 + 0.5) / 2 * 0.25 + (0.5 + 1) / 2 * 0.25 + 0.5)
    backwards = metrics.gap_recovered(-preference, weak, strong)
    assert metrics.apgr(backwards) < metrics.apgr(pgr)


def test_a_router_that_knows_the_answers_beats_the_hull_and_one_that_guesses_does_not():
    rng = np.random.default_rng(0)
    n = 400
    cheap_right = rng.random(n) < 0.6
    quality = np.c_[cheap_right, np.ones(n)].astype(float)
    cost = np.c_[np.full(n, 1.0), np.full(n, 10.0)]
    knowing = np.stack([np.zeros(n, int), np.where(cheap_right, 0, 1), np.ones(n, int)])
    guessing = np.stack([np.zeros(n, int), (rng.random(n) < 0.4).astype(int), np.ones(n, int)])
    assert metrics.hull_gain(knowing, quality, cost)[2] > 0.05
    assert metrics.hull_gain(guessing, quality, cost)[2] == pytest.approx(0, abs=0.02)
    assert metrics.bootstrap_gain(knowing, quality, cost, repeats=200).min() > 0


# -- on a published release ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def routed_home(tmp_path_factory) -> Home:
    return published_home(tmp_path_factory.mktemp("router"), prompts=400)


@pytest.fixture
def router_home(routed_home: Home, tmp_path: Path) -> Home:
    copy = tmp_path / "home"
    shutil.copytree(routed_home.root, copy, symlinks=True)
    return Home(copy)


def test_router_train_stores_a_versioned_router_and_its_evaluation_beside_the_release(router_home):
    result = run_cli("router", "train", home=router_home.root)
    assert result.returncode == 0, result.stderr
    folder = router_home.releases / "routers" / "latest"
    trained = json.loads((folder / "router.json").read_text())
    assert trained["trained_on"]["release"] == "v0001" and trained["trained_on"]["split"] == "train"
    assert sorted(trained["models"]) == sorted(MODELS.values())
    evaluation = json.loads((folder / "evaluation.json").read_text())
    # the prompt says how hard it is: the router sends easy sums to the cheap model and beats every mix
    assert evaluation["aiq_gain_over_hull"] > 0.02
    assert evaluation["aiq_gain_ci"][0] > 0
    assert evaluation["cost_ratio_at_best_accuracy"] < 0.9
    assert (folder / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| APGR" in (folder / "report.md").read_text()
    again = run_cli("router", "train", "--no-evaluate", home=router_home.root)
    assert "already stored" in again.stderr
    assert len([p for p in (router_home.releases / "routers").iterdir() if not p.is_symlink()]) == 1


def test_unrelated_neighbours_do_not_dilute_what_the_prompt_itself_says(routed_home):
    """The sums' stories are random words, so a prompt's nearest neighbours by embedding are unrelated prompts;
    the numbers' length says how hard a sum is. The cheap model is right on every small sum and wrong on every
    large one, and the router should say so with confidence, not drift to the neighbours' average (~50%)."""
    from flywheel.router.examples import read_examples
    from flywheel.router.model import RouterModel

    data = routed_home.releases / "router_examples" / "latest" / "data"
    model = RouterModel.fit(read_examples(data / "train.parquet").training())
    rng = random.Random(11)
    easy = [[{"role": "user", "content": ask(rng, rng.randint(1, 9), rng.randint(1, 9))}] for _ in range(20)]
    hard = [[{"role": "user", "content": ask(rng, rng.randint(10**3, 10**5), rng.randint(10**3, 10**5))}]
            for _ in range(20)]
    cheap, strong = model.models.index(MODELS["cheap"]), model.models.index(MODELS["strong"])
    on_easy, on_hard = model.predict_messages(easy)[0], model.predict_messages(hard)[0]
    assert on_easy[:, cheap].min() > 0.95 and on_hard[:, cheap].max() < 0.05
    assert on_hard[:, strong].min() > 0.95


def test_a_router_saved_before_it_kept_expected_chances_still_loads_and_routes(routed_home, tmp_path):
    from flywheel.router.examples import read_examples
    from flywheel.router.model import RouterModel

    data = routed_home.releases / "router_examples" / "latest" / "data"
    model = RouterModel.fit(read_examples(data / "train.parquet").training())
    model.bank_expected = None  # as routers were saved before
    model.save(tmp_path / "old")
    old = RouterModel.load(tmp_path / "old")
    assert old.bank_expected is None
    messages = [[{"role": "user", "content": ask(random.Random(5), 2, 3)}]]
    chances = old.predict_messages(messages)[0]
    assert chances.shape == (1, 3) and ((chances > 0) & (chances < 1)).all()


def test_routing_through_the_capture_wrapper_records_the_decision_and_explores(router_home, openai_server,
                                                                               tmp_path):
    from flywheel.route import AUTO, Router
    from flywheel.router.store import train

    train(router_home.releases)
    router = Router.load(router_home.root, willingness_to_pay=0.001, exploration=0.0)
    sink = EventSink(tmp_path / "landing", rotate_s=0.1)
    client = capture(openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0), sink,
                     app_id="calculator", router=router)
    rng = random.Random(99)
    easy = [{"role": "user", "content": ask(rng, 2, 3)}]
    hard = [{"role": "user", "content": ask(rng, 48213, 77190)}]
    price_rank = {MODELS["cheap"]: 0, MODELS["mid"]: 1, MODELS["strong"]: 2}
    client.chat.completions.create(model=AUTO, messages=easy)
    easy_model = openai_server.requests[-1]["model"]
    client.chat.completions.create(model=AUTO, messages=hard)
    hard_model = openai_server.requests[-1]["model"]
    assert price_rank[easy_model] < price_rank[hard_model]  # the hard sum is worth a dearer model
    exploring = Router.load(router_home.root, willingness_to_pay=0.001, exploration=0.99, seed=1)
    explorer = capture(openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0), sink,
                       router=exploring)
    explorer.chat.completions.create(model=AUTO, messages=easy)
    assert openai_server.requests[-1]["model"] != easy_model
    with pytest.raises(ValueError, match="needs a router"):
        capture(openai.OpenAI(base_url=openai_server.base_url, api_key="test"), sink).chat.completions.create(
            model=AUTO, messages=easy)
    sink.flush()
    events = [json.loads(line) for f in sorted((tmp_path / "landing").glob("*.jsonl"))
              for line in f.read_text().splitlines()]
    routing = [e["metadata"]["routing"] for e in events]
    assert [r["explored"] for r in routing] == [False, False, True]
    assert all(r["router_version"] == router.version and set(r["scores"]) == set(MODELS.values())
               for r in routing)
    assert [e["model"] for e in events] == [r["chosen"] for r in routing]
    assert routing[0]["scores"][MODELS["cheap"]] > routing[1]["scores"][MODELS["cheap"]]

    # the loop closes: routed traffic is ingested like any other and carries its decision
    result = run_cli("ingest", str(tmp_path / "landing"), home=router_home.root)
    assert result.returncode == 0, result.stderr
    from flywheel import warehouse

    with warehouse.session(router_home, read_only=True) as con:
        stored = con.execute("""SELECT count(*) FROM raw.interactions
                                WHERE metadata->>'$.routing.router_version' = ?""", [router.version]).fetchall()
    assert stored[0][0] == 3


def test_the_eval_set_is_a_weighted_stratified_share_of_held_out_prompts(router_home):
    import polars as pl

    items = pl.read_parquet(router_home.releases / "eval_items" / "latest" / "data" / "*.parquet")
    assert 0 < len(items) <= round(0.05 * 400) + 1
    assert set(items["split"]) <= {"validation", "test"}
    assert items["weight"].sum() == pytest.approx(1.0)
    assert items["difficulty_level"].n_unique() > 1  # both easy and hard prompts are represented
    result = run_cli("eval", "report", home=router_home.root)
    assert result.returncode == 0, result.stderr
    document = json.loads(next((router_home.releases / "eval_reports").glob("*/report.json")).read_text())
    assert {s["model"] for s in document["scores"]} == set(MODELS.values())
    assert all(s["low"] <= s["accuracy"] <= s["high"] for s in document["scores"])
    assert document["fidelity"][0]["app"] == "calculator" and document["eval_mae"] < 0.15


def test_choosing_spends_the_budget_where_models_disagree_and_weights_cover_every_prompt():
    rng = np.random.default_rng(1)
    n = 1000
    easy = rng.random(n) < 0.8
    good = np.where(easy[:, None], 1.0, (rng.random((n, 4)) < 0.5).astype(float))
    keys = [f"c{i}" for i in range(n)]
    selection = evalsets.choose(good, ["app"] * n, keys, np.ones(n, bool), 50)
    assert len(selection.items) == 50 and selection.weights.sum() == pytest.approx(1.0)
    hard_share = (~easy[selection.items]).mean()
    assert hard_share > 0.35  # 20% of the prompts, twice that share of the items: where the outcomes vary
    truth = good[:, 0].mean()
    assert evalsets.estimate(selection, good[:, 0]) == pytest.approx(truth, abs=0.06)
    again = evalsets.choose(good, ["app"] * n, keys, np.ones(n, bool), 50)
    assert again.items.tolist() == selection.items.tolist()  # the same data, the same set
    only_pool = evalsets.choose(good, ["app"] * n, keys, np.arange(n) < 100, 50)
    assert only_pool.items.max() < 100


def _abilities_and_difficulties(seed: int, prompts: int = 2000, models: int = 8) -> np.ndarray:
    """Outcomes as item-response theory pictures them: P(good) = sigmoid(ability - difficulty)."""
    rng = np.random.default_rng(seed)
    ability = np.linspace(-0.5, 2.5, models)
    difficulty = rng.normal(-1.5, 1.5, prompts)
    return (rng.random((prompts, models)) < 1 / (1 + np.exp(-(ability[None, :] - difficulty[:, None])))).astype(float)


def test_a_model_is_estimated_closer_from_how_the_others_found_each_prompt_than_from_the_set_alone():
    curve_errors, mean_errors = [], []
    for seed in range(12):
        good = _abilities_and_difficulties(seed)
        n = len(good)
        keys = [f"{seed}-{i}" for i in range(n)]
        for m in (2, 5):
            others = np.delete(good, m, axis=1)
            selection = evalsets.choose(others, ["app"] * n, keys, np.ones(n, bool), 60)
            truth = good[:, m].mean()
            curve_errors.append(abs(evalsets.estimate(selection, good[:, m], evalsets.ease(others)) - truth))
            mean_errors.append(abs(evalsets.estimate(selection, good[:, m]) - truth))
    assert np.mean(curve_errors) < 0.8 * np.mean(mean_errors)


def test_prompts_no_other_model_answered_count_at_the_weighted_mean_of_their_items():
    good = _abilities_and_difficulties(0)
    n = len(good)
    others = np.delete(good, 3, axis=1)
    others[: n // 2] = np.nan  # only model 3 answered the first half
    outcomes = good[:, 3].copy()
    outcomes[: n // 2] = 0.0   # and failed every one of them
    selection = evalsets.choose(others, ["app"] * n, [f"c{i}" for i in range(n)], np.ones(n, bool), 80)
    assert (selection.items < n // 2).any() and (selection.items >= n // 2).any()
    ease = evalsets.ease(others)
    whole = evalsets.estimate(selection, outcomes, ease)
    known_half = selection.items >= n // 2
    curve = evalsets.estimate(evalsets.Selection(selection.items[known_half] - n // 2,
                                                 selection.weights[known_half], []), outcomes[n // 2:], ease[n // 2:])
    assert curve > 0.5
    assert whole == pytest.approx(0.5 * curve, abs=1e-9)  # the unanswered half at its items' mean: zero
    assert evalsets.estimate(selection, outcomes, np.full(n, np.nan)) == evalsets.estimate(selection, outcomes)


def test_leaving_a_model_out_never_reads_its_outcomes_off_its_own_set():
    good = _abilities_and_difficulties(1, prompts=600, models=6)
    n = len(good)
    keys = [f"c{i}" for i in range(n)]
    pool = np.arange(n) % 5 == 0
    before = evalsets.leave_one_model_out(good, good, ["app"] * n, keys, [f"m{i}" for i in range(6)], pool, 0.05)[0]
    selection = evalsets.choose(np.delete(good, 4, axis=1), ["app"] * n, keys, pool, round(0.05 * n))
    off_set = np.setdiff1d(np.arange(n), selection.items)
    changed = good.copy()
    changed[off_set, 4] = 1 - changed[off_set, 4]
    after = evalsets.leave_one_model_out(changed, changed, ["app"] * n, keys, [f"m{i}" for i in range(6)], pool,
                                         0.05)[0]
    assert after.estimated["m4"] == before.estimated["m4"]
    assert after.logged["m4"] != before.logged["m4"]
