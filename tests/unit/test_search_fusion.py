"""Weighted reciprocal rank fusion of the two sides of hybrid search."""

from __future__ import annotations

import pytest

from tokpulse.embeddings.search import RRF_K, RRF_WEIGHTS, fuse


def test_a_row_on_both_lists_sums_its_shares_and_says_so():
    vector = [(1, 0.10), (2, 0.20), (3, 0.30)]  # (id, cosine distance)
    keyword = [(3, 9.0), (4, 5.0)]  # (id, keyword score)
    out = fuse(vector, keyword, limit=10)
    by_id = {f[0]: f for f in out}
    assert by_id[3][2] == 3 and by_id[3][4] == 1  # vector rank 3, keyword rank 1
    assert by_id[3][5] == pytest.approx(RRF_WEIGHTS[0] / (RRF_K + 3) + RRF_WEIGHTS[1] / (RRF_K + 1))
    assert by_id[4][1] is None and by_id[4][2] is None and by_id[4][4] == 2  # keyword only
    assert by_id[1][3] is None and by_id[1][1] == pytest.approx(0.9)  # vector only, similarity 1 - distance
    scores = [f[5] for f in out]
    assert scores == sorted(scores, reverse=True)


def test_ties_break_by_id_and_limit_cuts():
    out = fuse([(7, 0.5), (5, 0.5)], [], limit=1)
    assert [f[0] for f in out] == [5]  # equal distance: lower id ranks first


def test_threshold_drops_weak_vector_matches_but_not_keyword_ones():
    out = fuse([(1, 0.05), (2, 0.6)], [(2, 1.0)], limit=10, threshold=0.5)
    by_id = {f[0]: f for f in out}
    assert by_id[1][2] == 1  # similarity 0.95 passes
    assert by_id[2][2] is None and by_id[2][4] == 1  # 0.4 is dropped from the vector side, kept as keyword


def test_the_vector_side_dominates_a_single_keyword_hit():
    # keyword rank 1 alone (1/11) scores like vector rank 23 (3/33): it cannot beat vector rank 1
    out = fuse([(1, 0.1)], [(2, 3.0)], limit=2)
    assert [f[0] for f in out] == [1, 2]
