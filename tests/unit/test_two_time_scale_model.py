"""The 2TS model, its training windows, baselines and protocol (rec_lib.two_time_scale)."""

import numpy as np
import pandas as pd
import pytest
import torch

from rec_lib import data
from rec_lib.models import MF
from rec_lib.two_time_scale import baselines, experiments, model, protocol
from rec_lib.utils import seed_everything


@pytest.fixture(scope="module")
def stream():
    return data.drifting_stream(n_users=80, n_items=120, dim=4, max_interactions=60, min_interactions=3, seed=1)


@pytest.fixture(scope="module")
def d(stream):
    return protocol.prepare(stream)


def test_prepare_splits_by_time_and_indexes_sequences(d, stream):
    assert len(d.train) + len(d.val) + len(d.test) == len(stream)
    assert d.train.timestamps.max() <= d.val.timestamps.min() <= d.test.timestamps.min()
    # each user's training interactions come first in its sequence
    for k in range(len(d.seqs)):  # (test only) check the split labels per sequence
        part = d.part[d.seqs.offsets[k]:d.seqs.offsets[k + 1]]
        assert (np.diff(part) >= 0).all()
        assert (part == 0).sum() == d.n_train[d.seqs.users[k]]
    assert np.array_equal(d.n_train, np.bincount(d.train.users, minlength=d.n_users))
    pos = d.positions(2)
    assert np.array_equal(np.sort(d.position_users(pos)), np.sort(d.test.users))
    with pytest.raises(ValueError, match="too few"):
        protocol.prepare(stream.subset(np.arange(5)))


def test_windows_gathers_per_user_ranges(d):
    rows = np.array([0, 3])
    start, end = np.array([1, 0]), np.array([4, 2])
    items, lengths = protocol.windows(d.seqs, rows, start, end, pad=-1)
    assert items.shape == (2, 3) and lengths.tolist() == [3, 2]
    assert items[0].tolist() == d.seqs.sequence(0)[1:4].tolist()
    assert items[1].tolist() == d.seqs.sequence(3)[:2].tolist() + [-1]
    with pytest.raises(ValueError, match="start <= end"):
        protocol.windows(d.seqs, rows, np.array([2, 0]), np.array([1, 2]), pad=-1)


def test_eval_set_candidates_exclude_seen_items(d):
    es = protocol.eval_set(d, 2, 20, np.random.default_rng(0))
    assert es.candidates.shape == (len(d.test), 21)
    assert np.array_equal(es.candidates[:, 0], d.seqs.items[es.positions])
    assert not d.seen_all.contains(es.users[:, None], es.candidates[:, 1:]).any()
    small = protocol.eval_set(d, 1, 5, np.random.default_rng(0), max_rows=7)
    assert len(small.positions) == 7 and (np.diff(small.positions) > 0).all()
    with pytest.raises(ValueError, match="validation"):
        protocol.eval_set(d, 0, 5, np.random.default_rng(0))


def test_summaries_and_buckets():
    ranks = torch.tensor([1, 2, 20, 4])
    s = protocol.summarise(ranks)
    assert s["mrr"] == pytest.approx((1 + 0.5 + 0.05 + 0.25) / 4)
    assert s["recall@10"] == pytest.approx(0.75)
    b = protocol.activity_buckets(np.array([0, 3, 12, 50]), ranks, [0, 1, 10])
    assert b["n"].tolist() == [1, 1, 2]
    assert b.loc[2, "mrr"] == pytest.approx((0.05 + 0.25) / 2)
    with pytest.raises(ValueError, match="increasing"):
        protocol.activity_buckets(np.array([1]), ranks[:1], [0, 0])
    assert protocol.ranks_from_scores(torch.tensor([[1.0, 2.0, 0.0]])).tolist() == [2]


def test_candidate_scores_full_and_gather_agree():
    torch.manual_seed(0)
    h, table, bias = torch.randn(7, 3), torch.randn(11, 3), torch.randn(11)
    cands = torch.randint(0, 11, (7, 4))
    expect = torch.einsum("nd,nkd->nk", h, table[cands]) + bias[cands]
    assert torch.allclose(protocol.candidate_scores(h, table, cands, bias, chunk=3), expect, atol=1e-5)
    assert torch.allclose(protocol.candidate_scores(h, table, cands, bias, full_max_items=5), expect, atol=1e-5)
    with pytest.raises(ValueError, match="candidates"):
        protocol.candidate_scores(h, table, cands[:3])


def test_position_negatives_shape_and_exclusion(d):
    users = torch.tensor([[0, 0, 1], [2, 2, 2]])
    neg = protocol.position_negatives(users, 4, d.seen_train, np.random.default_rng(0))
    assert neg.shape == (2, 3, 4)
    assert not d.seen_train.contains(users[..., None].numpy(), neg.numpy()).any()


def test_active_mask_and_training_windows(d):
    t_star, K = 8, 3
    act = model.active_mask(d.n_train, t_star)
    assert np.array_equal(act, d.n_train > t_star)
    sets = {s.group: s for s in model.training_windows(d, t_star, K)}
    # inactive users: every training interaction, from psi
    inact = sets["in"]
    assert set(inact.users.tolist()) == set(np.flatnonzero((d.n_train > 0) & ~act))
    assert torch.equal(inact.lengths, torch.as_tensor(d.n_train[inact.users.numpy()]))
    # active users: only the last K training interactions enter stage 2
    a = sets["act"]
    assert set(a.users.tolist()) == set(np.flatnonzero(act)) and (a.lengths == K).all()
    for k, u in enumerate(a.users.tolist()):
        seq = d.seqs.sequence(d.user_row[u])
        T = d.n_train[u]
        assert a.items[k, :K].tolist() == seq[T - K:T].tolist()
        assert a.prev[k].item() == seq[T - K - 1]
    with pytest.raises(ValueError, match="active_len"):
        model.training_windows(d, t_star, 0)
    with pytest.raises(ValueError, match="t\\* must be"):
        model.active_mask(d.n_train, -1)


def test_two_time_scale_states_follow_eq_8_9():
    torch.manual_seed(0)
    m = model.TwoTimeScale(n_users=3, n_items=5, dim=4)
    users, items, lengths = torch.tensor([0, 2]), torch.tensor([[1, 2, 3], [4, 5, 5]]), torch.tensor([3, 1])
    traj = m.trajectory("act", users, items, lengths)
    assert torch.allclose(traj[:, 0], m.user.weight[users])  # phi^0 = phi_u for active users
    cell = torch.nn.GRUCell(4, 4)
    cell.load_state_dict({k.replace("_l0", ""): v for k, v in m.rnn["act"].state_dict().items()})
    h = m.user.weight[users[:1]]
    for t in range(3):  # phi^{t+1} = GRUcell(phi^t, x_{i_t})
        h = cell(m.item(items[:1, t]), h)
        assert torch.allclose(traj[0, t + 1], h[0], atol=1e-6)
    states = m.states("in", users, items, lengths)
    assert torch.allclose(states[:, 0], m.psi.expand(2, -1))  # phi^0 = psi for inactive users
    assert states.shape == (2, 3, 4)
    s = m.score(states, torch.tensor([[[1, 2], [1, 2], [1, 2]]] * 2))
    assert s.shape == (2, 3, 2)
    with pytest.raises(ValueError, match="group"):
        m.initial_state("both", users)
    with pytest.raises(ValueError, match="active_init"):
        model.TwoTimeScale(3, 5, 4, active_init="random")


def test_two_time_scale_plus_starts_at_2ts():
    torch.manual_seed(0)
    a = model.TwoTimeScale(3, 5, 4)
    b = model.TwoTimeScale(3, 5, 4, plus=True)
    b.load_state_dict(a.state_dict(), strict=False)
    users, items, lengths = torch.tensor([0]), torch.tensor([[1, 2]]), torch.tensor([2])
    assert torch.allclose(a.states("in", users, items, lengths), b.states("in", users, items, lengths, torch.tensor([3])))
    with torch.no_grad():
        b.W.weight[:, 4:] = 1.0  # now the last clicked item enters
    assert not torch.allclose(a.states("in", users, items, lengths), b.states("in", users, items, lengths, torch.tensor([3])))


def test_stage1_embeddings_are_frozen_in_stage2(d):
    seeds = seed_everything(0)
    mf, _ = model.fit_stage1(d, 8, seeds, epochs=1, lr=1e-2, n_neg=5)
    m = model.TwoTimeScale.from_stage1(mf)
    assert torch.allclose(m.item.weight[: d.n_items], mf.item.weight) and torch.allclose(m.user.weight, mf.user.weight)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    sets = model.training_windows(d, 8, 3)
    model.fit_windows(m, sets, d.seen_train, seeds, epochs=2, lr=1e-2, n_neg=5, batch_size=16)
    after = m.state_dict()
    assert torch.equal(after["user.weight"], before["user.weight"])
    assert torch.equal(after["item.weight"], before["item.weight"])
    assert not torch.equal(after["psi"], before["psi"])
    assert not torch.equal(after["rnn.act.weight_hh_l0"], before["rnn.act.weight_hh_l0"])


def test_window_loss_is_the_offer_set_cross_entropy():
    torch.manual_seed(0)
    m = model.TwoTimeScale(2, 6, 3)
    users, items, lengths = torch.tensor([0, 1]), torch.tensor([[1, 2], [3, 6]]), torch.tensor([2, 1])
    negs = torch.tensor([[[4, 5], [0, 5]], [[1, 2], [0, 0]]])
    loss = model.window_loss(m, "in", users, items, lengths, torch.tensor([6, 6]), negs)
    phi = m.states("in", users, items, lengths)
    terms = []
    for b, t in ((0, 0), (0, 1), (1, 0)):
        logits = torch.stack([phi[b, t] @ m.item.weight[j] for j in [items[b, t], *negs[b, t]]])
        terms.append(-torch.log_softmax(logits, 0)[0])
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)


def test_fit_windows_single_stage_trains_embeddings_and_can_stop(d):
    seeds = seed_everything(0)
    m = model.TwoTimeScale(d.n_users, d.n_items, 8)
    before = m.user.weight.detach().clone()
    calls = []
    hist, sec = model.fit_windows(m, model.training_windows(d, 8, 3), d.seen_train, seeds, epochs=5, lr=1e-2, n_neg=4,
                                  batch_size=16, cf=(d.train.users, d.train.items), cf_batch_size=256,
                                  on_epoch=lambda mod, e, s: calls.append(e) or e >= 1)
    assert calls == [0, 1] and len(hist) == 2 and sec > 0
    assert not torch.equal(m.user.weight, before)
    with pytest.raises(ValueError, match="epochs"):
        model.fit_windows(m, [], d.seen_train, seeds, epochs=0, lr=1e-2, n_neg=4)


def test_baselines_states_and_scores(d):
    torch.manual_seed(0)
    items, lengths = torch.tensor([[1, 2, 3], [4, 120, 120]]), torch.tensor([3, 1])
    sp = baselines.SumPooling(120, 4)
    st = sp.states("seq", torch.tensor([0, 1]), items, lengths)
    e = sp.embed.weight
    assert torch.allclose(st[0, 0], sp.A.bias)  # no history
    assert torch.allclose(st[0, 2], sp.A((e[1] + e[2]) / 2), atol=1e-6)  # mean of the two items before
    g = baselines.GRU4RecStates(120, 4)
    gs = g.states("seq", torch.tensor([0, 1]), items, lengths)
    assert torch.equal(gs[:, 0], torch.zeros(2, 4))
    assert torch.allclose(gs[0, 1:], g.gru4rec.hidden_states(items, lengths)[0, :2])
    table, bias = g.item_table()
    assert table.shape == (120, 4) and bias.shape == (120,)


def test_ccf_scores_use_the_mean_embedding_for_new_users(d):
    mf = MF(d.n_users, d.n_items, 4)
    es = protocol.eval_set(d, 2, 10, np.random.default_rng(0))
    s = baselines.ccf_scores(mf, d, es)
    cold = baselines.cold_user_embedding(mf, d.n_train)
    for k in range(0, len(es.users), 7):
        u = es.users[k]
        phi = mf.user.weight[u] if d.n_train[u] > 0 else cold
        assert torch.allclose(s[k], mf.item.weight[torch.as_tensor(es.candidates[k])] @ phi, atol=1e-5)


def test_sequential_scores_use_states_before_each_position(d):
    """A state function that returns the window position lets us check which state scores which row."""
    es = protocol.eval_set(d, 2, 3, np.random.default_rng(0))
    start = np.maximum(d.n_train - 2, 0)
    offs = es.positions - d.seqs.offsets[d.user_row[es.users]]

    def state_fn(users, items, lengths, prev):
        pos = torch.arange(items.shape[1], dtype=torch.float32)
        return pos[None, :, None].expand(len(users), -1, 1) + torch.as_tensor(start[users.numpy()], dtype=torch.float32)[:, None, None]

    scores = protocol.sequential_scores(d, es, start, state_fn, lambda h, c: h.expand(-1, c.shape[1]), batch_users=5)
    assert np.allclose(scores[:, 0].numpy(), offs)  # the state at window index p - start is position p
    with pytest.raises(ValueError, match="starts after"):
        protocol.sequential_scores(d, es, d.seqs.lengths[d.user_row].clip(min=0) + 100, state_fn, lambda h, c: h)


def test_run_seed_end_to_end_and_determinism(d):
    cfg = experiments.TrainConfig(dim=8, stage1_epochs=1, stage2_epochs=2, baseline_epochs=2, k_last=3, max_len=10,
                                  min_epochs=1, seq_batch=32)
    res, ex = experiments.run_seed(d, cfg, seed_everything(0), grid=(5, 10), n_neg_eval=20, checkpoint_rows=30)
    assert set(res) == set(experiments.METHODS)
    assert ex["t_star"] in (5, 10) and set(ex["validation"].index) == {5, 10}
    for r in res.values():
        assert len(r.ranks) == len(d.test) and 0 < r.metrics["mrr"] <= 1 and r.train_seconds > 0
    assert len(res["GRU4Rec"].curve) >= 1 and res["2TS"].curve[0][0] >= res["CCF"].train_seconds
    again, _ = experiments.run_seed(d, cfg, seed_everything(0), t_star=ex["t_star"], n_neg_eval=20,
                                    methods=("CCF", "2TS"))
    assert torch.equal(again["2TS"].ranks, res["2TS"].ranks)
    drift = experiments.embedding_drift(ex["models"]["2TS"], d, ex["t_star"], 3, steps=5)
    assert set(drift["group"]) <= {"inactive", "active"} and (drift["drift"] >= 0).all()
    few, _ = experiments.run_seed(d, cfg, seed_everything(0), t_star=ex["t_star"], n_neg_eval=20,
                                  methods=("CCF",), test_rows=25)
    assert len(few["CCF"].ranks) == 25 < len(d.test)  # a random subset of the test interactions
    with pytest.raises(ValueError, match="unknown methods"):
        experiments.run_seed(d, cfg, seed_everything(0), t_star=5, methods=("SASRec",))
    with pytest.raises(ValueError, match="grid"):
        experiments.run_seed(d, cfg, seed_everything(0))


def test_k_must_not_exceed_the_threshold(d):
    cfg = experiments.TrainConfig(dim=4, k_last=10)
    with pytest.raises(ValueError, match="K = 10 must not exceed"):
        experiments.train_sequential("2TS", d, cfg, seed_everything(0), t_star=5, mf=MF(d.n_users, d.n_items, 4))


def test_run_jobs_in_processes_matches_in_process(stream):
    cfg = experiments.TrainConfig(dim=4, stage1_epochs=1, stage2_epochs=1, baseline_epochs=1, k_last=3, max_len=10,
                                  min_epochs=1)
    jobs = [experiments.SeedJob("s", stream, cfg, seed=k, t_star=5, methods=("CCF", "2TS"), n_neg_eval=10)
            for k in range(2)]
    follow = lambda job, result: [experiments.SeedJob("s", stream, cfg, seed=5, t_star=result[1]["t_star"],  # noqa: E731
                                                      methods=("CCF",), n_neg_eval=10)] if job.seed == 0 else []
    here = {j.seed: r for j, r in experiments.run_jobs(jobs, workers=1, then=follow)}
    there = {j.seed: r for j, r in experiments.run_jobs(jobs, workers=2, then=follow)}
    assert set(here) == set(there) == {0, 1, 5}
    for k in here:
        assert torch.equal(here[k][0]["CCF"].ranks, there[k][0]["CCF"].ranks)
    assert torch.equal(here[1][0]["2TS"].ranks, there[1][0]["2TS"].ranks)
    with pytest.raises(ValueError, match="workers"):
        experiments.run_jobs(jobs, workers=0)


def test_seeded_init_depends_on_the_seed_only():
    torch.manual_seed(123)
    a = model.seeded_init(lambda: torch.nn.Linear(3, 2), seed_everything(5, set_global=False))
    state = torch.random.get_rng_state()
    torch.rand(10)  # move the global generator
    b = model.seeded_init(lambda: torch.nn.Linear(3, 2), seed_everything(5, set_global=False))
    assert torch.equal(a.weight, b.weight)
    torch.random.set_rng_state(state)
    model.seeded_init(lambda: torch.nn.Linear(3, 2), seed_everything(6, set_global=False))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is left as it was


def test_full_catalogue_set_ranks_every_item_once(d):
    es = experiments.full_catalogue_set(d, 2, np.random.default_rng(0), max_rows=12)
    assert es.full and es.candidates.shape == (12, d.n_items)
    for row in es.candidates:
        assert sorted(row.tolist()) == list(range(d.n_items))  # the true item once, then every other item
    pop = experiments.Popularity(d.n_users, d.n_items).fit(d.train.users, d.train.items)
    cfg = experiments.TrainConfig(dim=4)
    ranks = experiments.evaluate_model("Popularity", pop, d, es, cfg)
    assert ((ranks >= 1) & (ranks <= d.n_items)).all()


def test_window_loss_takes_negatives_of_valid_positions_only():
    torch.manual_seed(0)
    m = model.TwoTimeScale(2, 6, 3)
    users, items, lengths = torch.tensor([0, 1]), torch.tensor([[1, 2], [3, 6]]), torch.tensor([2, 1])
    negs = torch.tensor([[[4, 5], [0, 5]], [[1, 2], [0, 0]]])
    full = model.window_loss(m, "in", users, items, lengths, torch.tensor([6, 6]), negs)
    valid = model.window_loss(m, "in", users, items, lengths, torch.tensor([6, 6]), negs[torch.tensor([[1, 1], [1, 0]]).bool()])
    assert valid.item() == pytest.approx(full.item(), rel=1e-6)


def test_length_batches_cover_every_window_once_in_length_buckets():
    lengths = torch.tensor([5, 1, 300, 2, 280, 3, 1, 250, 6])
    batches = model.length_batches(lengths, 3, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(9))
    assert [len(b) for b in batches].count(3) == 3
    # the three long windows share one batch: no short window is padded to 300
    assert any(sorted(lengths[b].tolist()) == [250, 280, 300] for b in batches)
    with pytest.raises(ValueError):
        model.length_batches(lengths, 0)
