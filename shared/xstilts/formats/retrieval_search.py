"""Sentence retrieval for XTREME's BUCC 2018 and Tatoeba, as XTREME defines it.

XTREME evaluates retrieval without any fine-tuning signal for the task: sentences are embedded by
pooling one hidden layer of the encoder (``third_party/run_retrieval.py``), and then

* **BUCC 2018** mines bitext with LASER's margin-based ``mine_bitext`` (``retrieval='max'``,
  ``margin='ratio'``, ``neighborhood=4``, cosine), picks the F1-optimal score threshold on the gold
  pairs (``bucc_optimize``) and extracts the pairs above it (``third_party/utils_retrieve.py``);
* **Tatoeba** takes, for each English sentence, the nearest source sentence by cosine
  (``similarity_search``) and scores accuracy against the identity alignment.

The reference code uses faiss and materialises whole similarity matrices in places; here the
k-nearest-neighbour search is exact but chunked over queries and keys, so memory stays bounded
for BUCC-sized corpora (hundreds of thousands of sentences) and no faiss dependency is needed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import transformers

from xstilts.formats.base import pad_rows
from xstilts.modeling.batch import Batch
from xstilts.modeling.classifier import POOLINGS, pool
from xstilts.training.inference import infer

log = logging.getLogger(__name__)

MARGINS = ("ratio", "distance", "absolute")

# bucc_optimize sets the threshold halfway to the next candidate's score; after the last candidate
# there is none, so the threshold is put this far below the last score (XTREME itself would raise an
# IndexError there).
LAST_CANDIDATE_EPSILON = 1e-6

ScoredPair = tuple[tuple[str, str], float]


# --------------------------------------------------------------------------------------- encoding


def _check_layer(layer: int, num_layers: int) -> int:
    """Map ``layer`` to an index into ``hidden_states`` (length ``num_layers + 1``) or refuse it."""
    count = num_layers + 1
    if not -count <= layer < count:
        raise ValueError(
            f"evaluation.retrieval.layer: {layer} is out of range for a {num_layers}-layer encoder; "
            f"valid layers are {-count}..{count - 1} (0 = embeddings, -1 = last layer)"
        )
    return layer % count


def encode(
    encoder: transformers.PreTrainedModel,
    tokenizer: transformers.PreTrainedTokenizerBase,
    sentences: Sequence[str],
    layer: int,
    pooling: str,
    batch_size: int = 64,
    max_length: int = 128,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Embed ``sentences`` by pooling one hidden layer; float32, shape (len(sentences), hidden).

    ``layer`` indexes ``hidden_states`` as Hugging Face returns them: 0 is the embedding layer, 1
    the first transformer layer, -1 the last. (XTREME's ``--specific_layer i`` indexes the last
    ``num_layers`` outputs, i.e. it is ``layer = i + 1`` here.) ``pooling`` is ``"mean"`` (average
    over the real tokens, <s> and </s> included, as XTREME's default without
    ``--pool_skip_special_token``) or ``"first"`` (the <s> vector): the classifier's
    :func:`~xstilts.modeling.classifier.pool`.

    Sentences are tokenized once and run through the inference loop that prediction uses
    (:func:`xstilts.training.inference.infer`: batches longest first under a token cap, padded to
    their own longest sentence, on CUDA when available with bf16 autocast, in eval mode). Rows come
    back in the input order. ``progress(done, total)`` is called after each batch with the number
    of sentences embedded so far.
    """
    if pooling not in POOLINGS:
        raise ValueError(
            f"evaluation.retrieval.pooling: {pooling!r} is not one of {', '.join(POOLINGS)}"
        )
    hidden_layer = _check_layer(layer, int(encoder.config.num_hidden_layers))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids: list[list[int]] = []
    if sentences:  # a tokenizer refuses an empty batch
        ids = tokenizer(
            list(sentences), truncation=True, max_length=max_length, add_special_tokens=True
        )["input_ids"]

    def run(batch: Batch) -> torch.Tensor:
        outputs = encoder(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            output_hidden_states=True,
        )
        hidden = outputs.hidden_states[hidden_layer].float()
        return pool(hidden, batch.attention_mask, pooling)

    rows = infer(
        encoder,
        np.fromiter((len(r) for r in ids), dtype=np.int64, count=len(ids)),
        batch_size,
        lambda index: Batch(*pad_rows([ids[i] for i in index], pad_id)),
        run,
        lambda vectors, _: vectors.cpu().numpy(),
        None if progress is None else lambda done, total, _rate, _loss: progress(done, total),
    )
    log.debug("encoded %d sentences (layer %d, %s pooling)", len(ids), layer, pooling)
    if not rows:
        return np.zeros((0, int(encoder.config.hidden_size)), dtype=np.float32)
    return np.stack(rows)


# ------------------------------------------------------------------------------ nearest neighbours


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32), so inner products are cosines; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float32).tiny)


def knn(
    x: np.ndarray,
    y: np.ndarray,
    k: int,
    query_chunk: int = 2048,
    key_chunk: int = 65536,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` of each row of ``x`` among the rows of ``y``.

    Returns (similarities, indices), each (len(x), min(k, len(y))), similarities descending. It is
    what faiss's ``IndexFlatIP.search`` gives LASER, computed in blocks of ``query_chunk`` queries
    by ``key_chunk`` keys with a running top-k merged after each key block, so memory is
    O(query_chunk * (key_chunk + k)) whatever the corpus sizes. Rows should already be normalised
    when cosine similarity is meant. Ties are broken deterministically (torch's CPU ``topk``).
    """
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    if query_chunk < 1 or key_chunk < 1:
        raise ValueError("query_chunk and key_chunk must be positive")
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    n, m = xt.shape[0], yt.shape[0]
    k = min(k, m)
    sims = np.zeros((n, k), dtype=np.float32)
    inds = np.zeros((n, k), dtype=np.int64)
    if n == 0 or k == 0:
        return sims, inds
    for q0 in range(0, n, query_chunk):
        q = xt[q0 : q0 + query_chunk]
        best_sim = torch.empty((q.shape[0], 0), dtype=torch.float32)
        best_ind = torch.empty((q.shape[0], 0), dtype=torch.long)
        for k0 in range(0, m, key_chunk):
            block = q @ yt[k0 : k0 + key_chunk].T
            top = block.topk(min(k, block.shape[1]), dim=1)
            cand_sim = torch.cat((best_sim, top.values), dim=1)
            cand_ind = torch.cat((best_ind, top.indices + k0), dim=1)
            merged = cand_sim.topk(min(k, cand_sim.shape[1]), dim=1)
            best_sim = merged.values
            best_ind = cand_ind.gather(1, merged.indices)
        sims[q0 : q0 + q.shape[0]] = best_sim.numpy()
        inds[q0 : q0 + q.shape[0]] = best_ind.numpy()
    return sims, inds


# ------------------------------------------------------------------------------------------- BUCC


def _margin(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if name == "ratio":
        return lambda a, b: a / b
    if name == "distance":
        return lambda a, b: a - b
    if name == "absolute":
        return lambda a, b: a
    raise ValueError(f"margin: {name!r} is not one of {', '.join(MARGINS)}")


def mine_pairs(
    x: np.ndarray,
    y: np.ndarray,
    k: int = 4,
    margin: str = "ratio",
    query_chunk: int = 2048,
    key_chunk: int = 65536,
) -> tuple[np.ndarray, np.ndarray]:
    """Margin-based bitext mining: LASER's ``mine_bitext`` with ``retrieval='max'``, as XTREME runs it.

    ``x`` holds the source-language embeddings, ``y`` the English ones. After L2 normalisation,
    each side's ``k`` nearest neighbours on the other side give its mean neighbour similarity; a
    pair's score is ``margin(cos(x_i, y_j), (x2y_mean[i] + y2x_mean[j]) / 2)`` -- the ratio margin
    discounts "hub" sentences that are close to everything. Every source sentence proposes its
    best-scoring target among its neighbours and every target its best source; the proposals are
    then accepted greedily by descending score, skipping any whose source or target was already
    used.

    Returns (pairs, scores): int64 (m, 2) of (source index, target index) and float64 (m,), by
    descending score, with no threshold applied (LASER's ``threshold=0`` drops nothing positive
    under the ratio margin; thresholds are applied later, see :func:`apply_threshold`). Equal
    scores keep the order LASER builds them in (all forward proposals, then all backward), since
    the sort is stable.
    """
    score_margin = _margin(margin)
    x = normalize(x)
    y = normalize(y)
    if len(x) == 0 or len(y) == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float64)
    x2y_sim, x2y_ind = knn(x, y, k, query_chunk, key_chunk)
    y2x_sim, y2x_ind = knn(y, x, k, query_chunk, key_chunk)
    x2y_mean = x2y_sim.mean(axis=1)
    y2x_mean = y2x_sim.mean(axis=1)
    # score(x_i, y_j) for each candidate; the kNN similarities are those dot products already.
    fwd_scores = score_margin(x2y_sim, (x2y_mean[:, None] + y2x_mean[x2y_ind]) / 2)
    bwd_scores = score_margin(y2x_sim, (y2x_mean[:, None] + x2y_mean[y2x_ind]) / 2)
    fwd_scores = np.asarray(fwd_scores, dtype=np.float64)
    bwd_scores = np.asarray(bwd_scores, dtype=np.float64)
    fwd_best = x2y_ind[np.arange(len(x)), fwd_scores.argmax(axis=1)]
    bwd_best = y2x_ind[np.arange(len(y)), bwd_scores.argmax(axis=1)]

    indices = np.stack(
        (
            np.concatenate((np.arange(len(x)), bwd_best)),
            np.concatenate((fwd_best, np.arange(len(y)))),
        ),
        axis=1,
    )
    scores = np.concatenate((fwd_scores.max(axis=1), bwd_scores.max(axis=1)))
    seen_src: set[int] = set()
    seen_trg: set[int] = set()
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        src, trg = int(indices[i, 0]), int(indices[i, 1])
        if src not in seen_src and trg not in seen_trg:
            seen_src.add(src)
            seen_trg.add(trg)
            keep.append(int(i))
    log.debug("mined %d pairs from %d x %d sentences", len(keep), len(x), len(y))
    return indices[keep].astype(np.int64), scores[keep]


def unify_sentences(
    ids: Sequence[str], sentences: Sequence[str]
) -> tuple[list[int], list[str | None]]:
    """Reduce a BUCC side to distinct sentence texts, as XTREME does before and after mining.

    XTREME mines over distinct texts (``text_load_unify``), then maps texts back to ids
    (``read_sent2id``) and drops any text that occurs more than once in the file, since it has no
    single id. Returns (rows, unique_ids): for each distinct text in first-occurrence order, the
    row of its first occurrence (embed or select those rows) and its id, or ``None`` when the text
    is repeated. Repeated texts still take part in mining (they can claim a partner), but
    :func:`scored_id_pairs` leaves their pairs out -- exactly XTREME's behaviour.
    """
    if len(ids) != len(sentences):
        raise ValueError(f"{len(ids)} ids for {len(sentences)} sentences")
    first: dict[str, int] = {}
    repeated: set[str] = set()
    for row, text in enumerate(sentences):
        if text in first:
            repeated.add(text)
        else:
            first[text] = row
    rows = list(first.values())
    unique_ids = [None if sentences[r] in repeated else ids[r] for r in rows]
    return rows, unique_ids


def scored_id_pairs(
    pairs: np.ndarray,
    scores: np.ndarray,
    source_ids: Sequence[str | None],
    target_ids: Sequence[str | None],
) -> list[ScoredPair]:
    """Index pairs from :func:`mine_pairs` as ((source id, target id), score), order kept.

    Pairs where either side's id is ``None`` (a repeated text, see :func:`unify_sentences`) are
    left out, as XTREME's ``read_candidate2score`` does.
    """
    out: list[ScoredPair] = []
    for (i, j), score in zip(pairs.tolist(), scores.tolist(), strict=True):
        src, trg = source_ids[i], target_ids[j]
        if src is not None and trg is not None:
            out.append(((src, trg), float(score)))
    return out


def apply_threshold(scored_pairs: Sequence[ScoredPair], threshold: float) -> list[ScoredPair]:
    """The pairs scoring strictly above ``threshold`` (LASER's ``scores[i] > threshold``)."""
    return [pair for pair in scored_pairs if pair[1] > threshold]


def bucc_mine(
    source_ids: Sequence[str | None],
    x: np.ndarray,
    target_ids: Sequence[str | None],
    y: np.ndarray,
    k: int = 4,
    threshold: float | None = None,
    margin: str = "ratio",
    query_chunk: int = 2048,
    key_chunk: int = 65536,
) -> list[ScoredPair]:
    """Mine id pairs between a source side (``x``) and the English side (``y``), best first.

    With ``threshold=None`` all candidates come back (to pick a threshold on gold pairs with
    :func:`best_threshold`); otherwise only those scoring strictly above it.
    """
    if len(source_ids) != len(x) or len(target_ids) != len(y):
        raise ValueError("bucc_mine needs one id per embedding row on each side")
    pairs, scores = mine_pairs(x, y, k, margin, query_chunk, key_chunk)
    scored = scored_id_pairs(pairs, scores, source_ids, target_ids)
    return scored if threshold is None else apply_threshold(scored, threshold)


def best_threshold(
    scored_pairs: Sequence[ScoredPair], gold: set[tuple[str, str]]
) -> tuple[float, float]:
    """XTREME's ``bucc_optimize``: the score threshold that maximises F1 against ``gold``.

    Candidates are walked by descending score (stable, like Python's ``sorted``); after each one,
    precision and recall of "everything so far" give an F1, and on a strictly better F1 the
    threshold is set halfway between this candidate's score and the next one's, so that extracting
    pairs strictly above it keeps exactly the candidates walked so far (unless the two scores tie).
    After the last candidate the threshold is its score minus ``LAST_CANDIDATE_EPSILON``.

    Returns (threshold, best F1 in [0, 1]); with no gold pair among the candidates, (inf, 0.0):
    no threshold helps, and an infinite one extracts nothing.
    """
    items = sorted(scored_pairs, key=lambda item: -item[1])
    ngold = len(gold)
    nextract = ncorrect = 0
    threshold = math.inf
    best_f1 = 0.0
    for i, (pair, score) in enumerate(items):
        nextract += 1
        if pair in gold:
            ncorrect += 1
        if ncorrect > 0:
            precision = ncorrect / nextract
            recall = ncorrect / ngold
            f1 = 2 * precision * recall / (precision + recall)
            if f1 > best_f1:
                best_f1 = f1
                if i + 1 < len(items):
                    threshold = (score + items[i + 1][1]) / 2
                else:
                    threshold = score - LAST_CANDIDATE_EPSILON
    return float(threshold), float(best_f1)


# ----------------------------------------------------------------------------------------- Tatoeba


def tatoeba_predictions(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """XTREME's Tatoeba predictions: for each English sentence, its nearest source sentence.

    ``x`` holds the source-language embeddings, ``y`` the English ones (row i of each is a
    translation pair). XTREME's ``similarity_search(x, y)`` indexes ``x`` and queries it with
    ``y`` (L2 on normalised vectors, i.e. cosine), so prediction ``j`` is the row of ``x`` nearest
    to ``y[j]``; accuracy is the share of ``j`` with prediction ``j``. To query the other way, swap
    the arguments. Returns int64 of length ``len(y)``.
    """
    x = normalize(x)
    y = normalize(y)
    if len(x) == 0:
        raise ValueError("tatoeba_predictions needs at least one source sentence")
    _, ind = knn(y, x, k=1)
    return ind[:, 0]
