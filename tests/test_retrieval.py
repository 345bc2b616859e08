"""Sentence retrieval (BUCC 2018 mining, Tatoeba) against XTREME/LASER's definitions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from xstilts.formats.retrieval_search import (
    LAST_CANDIDATE_EPSILON,
    apply_threshold,
    best_threshold,
    bucc_mine,
    encode,
    knn,
    mine_pairs,
    normalize,
    scored_id_pairs,
    tatoeba_predictions,
    unify_sentences,
)

# ------------------------------------------------------------------------------------------ knn


def test_knn_matches_brute_force_with_small_chunks() -> None:
    rng = np.random.default_rng(0)
    x = normalize(rng.standard_normal((50, 3)))
    y = normalize(rng.standard_normal((83, 3)))
    sims, inds = knn(x, y, k=4, query_chunk=7, key_chunk=11)

    full = x @ y.T
    ref_inds = np.argsort(-full, axis=1)[:, :4]
    ref_sims = np.take_along_axis(full, ref_inds, axis=1)
    assert sims.shape == (50, 4) and inds.shape == (50, 4)
    assert inds.dtype == np.int64 and sims.dtype == np.float32
    np.testing.assert_array_equal(inds, ref_inds)
    np.testing.assert_allclose(sims, ref_sims, rtol=1e-6, atol=1e-6)
    assert np.all(np.diff(sims, axis=1) <= 0)


def test_knn_clips_k_to_the_number_of_keys() -> None:
    rng = np.random.default_rng(1)
    x = normalize(rng.standard_normal((5, 4)))
    y = normalize(rng.standard_normal((3, 4)))
    sims, inds = knn(x, y, k=10, query_chunk=2, key_chunk=2)
    assert sims.shape == (5, 3)
    np.testing.assert_array_equal(np.sort(inds, axis=1), np.tile(np.arange(3), (5, 1)))
    np.testing.assert_array_equal(inds, np.argsort(-(x @ y.T), axis=1))


# ------------------------------------------------------------------------------- mine_pairs


def laser_mine_max(
    x: np.ndarray, y: np.ndarray, k: int, margin: str
) -> list[tuple[int, int, float]]:
    """LASER's mine_bitext (retrieval='max', threshold=0), kept as literal as possible."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)

    def brute_knn(a: np.ndarray, b: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        full = a @ b.T
        ind = np.argsort(-full, axis=1)[:, :kk]
        return np.take_along_axis(full, ind, axis=1), ind

    x2y_sim, x2y_ind = brute_knn(x, y, min(y.shape[0], k))
    x2y_mean = x2y_sim.mean(axis=1)
    y2x_sim, y2x_ind = brute_knn(y, x, min(x.shape[0], k))
    y2x_mean = y2x_sim.mean(axis=1)

    if margin == "absolute":
        margin_fn = lambda a, b: a  # noqa: E731
    elif margin == "distance":
        margin_fn = lambda a, b: a - b  # noqa: E731
    else:
        margin_fn = lambda a, b: a / b  # noqa: E731

    def score(xv, yv, fwd_mean, bwd_mean):
        return margin_fn(xv.dot(yv), (fwd_mean + bwd_mean) / 2)

    def score_candidates(xs, ys, candidate_inds, fwd_mean, bwd_mean):
        scores = np.zeros(candidate_inds.shape)
        for i in range(scores.shape[0]):
            for j in range(scores.shape[1]):
                kk = candidate_inds[i, j]
                scores[i, j] = score(xs[i], ys[kk], fwd_mean[i], bwd_mean[kk])
        return scores

    fwd_scores = score_candidates(x, y, x2y_ind, x2y_mean, y2x_mean)
    bwd_scores = score_candidates(y, x, y2x_ind, y2x_mean, x2y_mean)
    fwd_best = x2y_ind[np.arange(x.shape[0]), fwd_scores.argmax(axis=1)]
    bwd_best = y2x_ind[np.arange(y.shape[0]), bwd_scores.argmax(axis=1)]
    indices = np.stack(
        (
            np.concatenate((np.arange(x.shape[0]), bwd_best)),
            np.concatenate((fwd_best, np.arange(y.shape[0]))),
        ),
        axis=1,
    )
    scores = np.concatenate((fwd_scores.max(axis=1), bwd_scores.max(axis=1)))
    seen_src, seen_trg = set(), set()
    out = []
    for i in np.argsort(-scores):
        src_ind, trg_ind = indices[i]
        if src_ind not in seen_src and trg_ind not in seen_trg:
            seen_src.add(src_ind)
            seen_trg.add(trg_ind)
            out.append((int(src_ind), int(trg_ind), float(scores[i])))
    return out


@pytest.mark.parametrize("margin", ["ratio", "distance", "absolute"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mine_pairs_matches_laser_reference(margin: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Few dimensions and uneven sides: many sentences share neighbours, so the greedy step matters.
    x = rng.standard_normal((37, 3)).astype(np.float32)
    y = rng.standard_normal((52, 3)).astype(np.float32)
    pairs, scores = mine_pairs(x, y, k=4, margin=margin, query_chunk=5, key_chunk=9)
    ref = laser_mine_max(x, y, k=4, margin=margin)

    assert pairs.dtype == np.int64 and pairs.shape == (len(ref), 2)
    np.testing.assert_array_equal(pairs, np.array([(i, j) for i, j, _ in ref]))
    np.testing.assert_allclose(scores, [s for _, _, s in ref], rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(scores) <= 0)
    assert len(set(pairs[:, 0].tolist())) == len(pairs) == len(set(pairs[:, 1].tolist()))
    assert len(pairs) < len(x) + len(y)  # the greedy step did reject some proposals


def test_mine_pairs_hand_computed() -> None:
    # Unit vectors, so the cosines are the dot products:
    #   x0=(1,0)  x1=(0,1)  x2=(.6,.8);  y0=(.8,.6)  y1=(-.6,.8)  y2=(1,0)
    #         y0    y1    y2
    #   x0   .80  -.60  1.00   top-2 mean x2y: x0 (1+.8)/2=.90  x1 (.8+.6)/2=.70  x2 (.96+.6)/2=.78
    #   x1   .60   .80   .00   top-2 mean y2x: y0 (.96+.8)/2=.88  y1 (.8+.28)/2=.54  y2 (1+.6)/2=.80
    #   x2   .96   .28   .60
    # Ratio scores a / ((mx + my) / 2) of the k=2 candidates:
    #   x0: y2 1/.85=1.1765   y0 .8/.89=.8989   -> (0, 2)
    #   x1: y1 .8/.62=1.2903  y0 .6/.79=.7595   -> (1, 1)
    #   x2: y0 .96/.83=1.1566 y2 .6/.79=.7595   -> (2, 0)
    #   y0: x2 1.1566, x0 .8989 -> (2, 0);  y1: x1 1.2903, x2 .28/.66=.4242 -> (1, 1);
    #   y2: x0 1.1765, x2 .7595 -> (0, 2)
    # Greedy by score keeps (1,1), (0,2), (2,0) and drops their backward duplicates.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    y = np.array([[0.8, 0.6], [-0.6, 0.8], [1.0, 0.0]])
    pairs, scores = mine_pairs(x, y, k=2)
    np.testing.assert_array_equal(pairs, [[1, 1], [0, 2], [2, 0]])
    np.testing.assert_allclose(scores, [0.8 / 0.62, 1 / 0.85, 0.96 / 0.83], rtol=1e-6)
    # The same with the distance margin a - (mx + my) / 2: .8-.62, 1-.85, .96-.83.
    pairs, scores = mine_pairs(x * 3.0, y, k=2, margin="distance")  # scale is normalised away
    np.testing.assert_array_equal(pairs, [[1, 1], [0, 2], [2, 0]])
    np.testing.assert_allclose(scores, [0.18, 0.15, 0.13], atol=1e-6)


def test_mine_pairs_rejects_unknown_margin() -> None:
    with pytest.raises(ValueError, match="margin"):
        mine_pairs(np.eye(2), np.eye(2), margin="cosine")


# ------------------------------------------------------------------------------------- BUCC ids


def test_bucc_mine_maps_ids_and_thresholds_strictly() -> None:
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    y = np.array([[0.8, 0.6], [-0.6, 0.8], [1.0, 0.0]])
    src, trg = ["de-1", "de-2", "de-3"], ["en-1", "en-2", "en-3"]
    everything = bucc_mine(src, x, trg, y, k=2)
    assert [pair for pair, _ in everything] == [
        ("de-2", "en-2"),
        ("de-1", "en-3"),
        ("de-3", "en-1"),
    ]
    cut = everything[1][1]
    kept = bucc_mine(src, x, trg, y, k=2, threshold=cut)
    assert [pair for pair, _ in kept] == [("de-2", "en-2")]  # strictly greater: ties are dropped
    assert apply_threshold(everything, cut - 1e-9) == everything[:2]


def test_unify_sentences_and_repeated_texts_are_left_out() -> None:
    rows, ids = unify_sentences(["a", "b", "c", "d"], ["hi", "yo", "hi", "ok"])
    assert rows == [0, 1, 3]
    assert ids == [None, "b", "d"]
    pairs = np.array([[0, 1], [1, 0], [2, 2]])
    scored = scored_id_pairs(pairs, np.array([3.0, 2.0, 1.0]), ids, ["e1", "e2", None])
    assert scored == [(("b", "e1"), 2.0)]


def test_best_threshold_hand_computed() -> None:
    gold = {("s1", "t1"), ("s3", "t3"), ("s9", "t9")}
    candidates = [
        (("s4", "t4"), 0.6),
        (("s2", "t2"), 0.8),
        (("s3", "t3"), 0.7),
        (("s1", "t1"), 0.9),
    ]
    # Walking 0.9 (gold), 0.8 (not), 0.7 (gold), 0.6 (not) with |gold| = 3:
    #   after 0.9: P=1,   R=1/3, F1=2*(1/3)/(4/3)=0.5   -> best, threshold (0.9+0.8)/2 = 0.85
    #   after 0.8: P=1/2, R=1/3, F1=2*(1/6)/(5/6)=0.4
    #   after 0.7: P=2/3, R=2/3, F1=2/3                -> best, threshold (0.7+0.6)/2 = 0.65
    #   after 0.6: P=1/2, R=2/3, F1=2*(1/3)/(7/6)=4/7
    threshold, f1 = best_threshold(candidates, gold)
    assert threshold == pytest.approx(0.65)
    assert f1 == pytest.approx(2 / 3)
    extracted = {pair for pair, _ in apply_threshold(candidates, threshold)}
    assert extracted == {("s1", "t1"), ("s2", "t2"), ("s3", "t3")}


def test_best_threshold_edge_cases() -> None:
    # The best F1 at the last candidate: just below its score, so it is still extracted.
    threshold, f1 = best_threshold([(("a", "b"), 0.3), (("c", "d"), 0.9)], {("a", "b")})
    assert f1 == pytest.approx(2 / 3)  # P=1/2, R=1
    assert threshold == pytest.approx(0.3 - LAST_CANDIDATE_EPSILON)
    assert len(apply_threshold([(("a", "b"), 0.3)], threshold)) == 1
    # No gold pair among the candidates: nothing to extract.
    assert best_threshold([(("a", "b"), 0.3)], {("x", "y")}) == (math.inf, 0.0)
    assert best_threshold([], {("x", "y")}) == (math.inf, 0.0)


# ----------------------------------------------------------------------------------------- Tatoeba


def test_tatoeba_predictions_follow_a_permutation() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 8)).astype(np.float32)  # source sentences
    perm = np.array([4, 0, 5, 2])
    # English sentence j translates source sentence perm[j]; scale and noise must not matter.
    y = 2.5 * x[perm] + 0.01 * rng.standard_normal((4, 8)).astype(np.float32)
    pred = tatoeba_predictions(x, y)
    assert pred.shape == (4,)
    np.testing.assert_array_equal(pred, perm)
    # The identity alignment scores accuracy 1.
    assert (tatoeba_predictions(x, 3 * x) == np.arange(6)).all()


# ------------------------------------------------------------------------------------------ encode

SENTENCES = [
    "Hello world.",
    "A rather longer sentence, with quite a few more tokens than the others have.",
    "Bonjour",
    "Das ist ein kleiner Test.",
    "",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_encode_is_independent_of_batching_and_order(tiny) -> None:
    model, tokenizer = tiny
    calls: list[tuple[int, int]] = []
    one = encode(model, tokenizer, SENTENCES, layer=-1, pooling="mean", batch_size=1)
    three = encode(
        model,
        tokenizer,
        SENTENCES,
        -1,
        "mean",
        batch_size=3,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert one.shape == (5, 32) and one.dtype == np.float32
    np.testing.assert_allclose(one, three, atol=1e-5)
    assert calls == [(3, 5), (5, 5)]
    reversed_ = encode(model, tokenizer, SENTENCES[::-1], -1, "mean", batch_size=2)
    np.testing.assert_allclose(reversed_[::-1], one, atol=1e-5)
    assert encode(model, tokenizer, [], -1, "mean").shape == (0, 32)


def test_encode_pooling_matches_manual_computation(tiny) -> None:
    model, tokenizer = tiny
    sentence = SENTENCES[3]
    mean = encode(model, tokenizer, SENTENCES, layer=1, pooling="mean", batch_size=4)
    first = encode(model, tokenizer, SENTENCES, layer=1, pooling="first", batch_size=4)
    device = next(model.parameters()).device
    batch = tokenizer(sentence, return_tensors="pt").to(device)
    with torch.inference_mode():
        hidden = model(**batch, output_hidden_states=True).hidden_states[1][0].float().cpu()
    np.testing.assert_allclose(mean[3], hidden.mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(first[3], hidden[0].numpy(), atol=1e-5)


def test_encode_layers(tiny) -> None:
    model, tokenizer = tiny
    embeddings = encode(model, tokenizer, SENTENCES, layer=0, pooling="mean")
    last = encode(model, tokenizer, SENTENCES, layer=-1, pooling="mean")
    assert not np.allclose(embeddings, last, atol=1e-3)
    np.testing.assert_allclose(encode(model, tokenizer, SENTENCES, 2, "mean"), last, atol=1e-6)
    np.testing.assert_allclose(
        encode(model, tokenizer, SENTENCES, -3, "mean"), embeddings, atol=1e-6
    )


@pytest.mark.parametrize("layer", [3, -4])
def test_encode_rejects_out_of_range_layer(tiny, layer: int) -> None:
    model, tokenizer = tiny
    with pytest.raises(ValueError, match=r"evaluation\.retrieval\.layer.*-3\.\.2"):
        encode(model, tokenizer, SENTENCES, layer=layer, pooling="mean")


def test_encode_rejects_unknown_pooling(tiny) -> None:
    model, tokenizer = tiny
    with pytest.raises(ValueError, match=r"evaluation\.retrieval\.pooling.*first, mean"):
        encode(model, tokenizer, SENTENCES, layer=-1, pooling="cls")
