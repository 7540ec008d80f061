"""Result comparison with test-suite semantics."""

from __future__ import annotations

import pytest

from sqltrain.evaluate.result_match import (
    FLOAT_DIGITS,
    canonical_value,
    has_top_level_order_by,
    results_match,
)

GOLD = [(1, "a", 2.5), (2, "b", None), (3, "c", 7.0)]


@pytest.mark.parametrize("order_matters", [False, True])
def test_identical_results_match(order_matters):
    assert results_match(GOLD, list(GOLD), order_matters)


def test_column_permutation_matches():
    permuted = [(name, val, i) for i, name, val in GOLD]
    assert results_match(GOLD, permuted, order_matters=False)
    assert results_match(GOLD, permuted, order_matters=True)


def test_column_permutation_must_be_consistent_across_rows():
    gold = [(1, 2), (3, 4)]
    # each row is a permutation of a gold row, but not by one mapping for all rows
    assert not results_match(gold, [(1, 2), (4, 3)], order_matters=False)
    assert results_match(gold, [(2, 1), (4, 3)], order_matters=False)


def test_columns_with_the_same_values_in_other_rows():
    gold = [(1, 1), (1, 2)]
    assert results_match(gold, [(2, 1), (1, 1)], order_matters=False)  # swap columns + rows
    assert not results_match(gold, [(1, 1), (2, 2)], order_matters=False)


def test_duplicate_columns_and_many_lookalike_columns():
    gold = [(1, 1, 2), (3, 3, 4)]
    assert results_match(gold, [(2, 1, 1), (4, 3, 3)], order_matters=True)
    wide = [tuple(range(30))] * 3  # 30 distinct columns, no search explosion
    assert results_match(wide, [tuple(reversed(wide[0]))] * 3, order_matters=False)
    same = [(1,) * 25, (2,) * 25]  # 25 identical columns: one class, matched at once
    assert results_match(same, list(same), order_matters=False)
    assert not results_match(same, [(1,) * 24 + (2,), (2,) * 25], order_matters=False)


def test_duplicates_are_a_bag_not_a_set():
    assert not results_match([(1,), (1,), (2,)], [(1,), (2,), (2,)], order_matters=False)
    assert not results_match([(1,), (1,)], [(1,)], order_matters=False)
    assert results_match([(1,), (2,), (1,)], [(1,), (1,), (2,)], order_matters=False)


def test_row_order_matters_only_with_order_by():
    gold, reversed_rows = [(1,), (2,), (3,)], [(3,), (2,), (1,)]
    assert results_match(gold, reversed_rows, order_matters=False)
    assert not results_match(gold, reversed_rows, order_matters=True)


def test_nulls_equal_nulls_and_nothing_else():
    assert results_match([(None, 1)], [(None, 1)], order_matters=False)
    assert not results_match([(None,)], [(0,)], order_matters=False)
    assert not results_match([(None,)], [("",)], order_matters=False)
    assert not results_match([(None,)], [("NULL",)], order_matters=False)


def test_int_float_and_rounding():
    assert results_match([(1,)], [(1.0,)], order_matters=False)
    assert results_match([(0.1 + 0.2,)], [(0.3,)], order_matters=False)
    assert results_match([(72.33333333333333,)], [(72.33333333333334,)], order_matters=False)
    assert not results_match([(2.5,)], [(2,)], order_matters=False)
    assert not results_match([(0.3333,)], [(0.3334,)], order_matters=False)
    assert not results_match([(1,)], [("1",)], order_matters=False)
    assert not results_match([("a",)], [(b"a",)], order_matters=False)
    assert not results_match([("a ",)], [("a",)], order_matters=False)  # spaces are data
    assert not results_match([("A",)], [("a",)], order_matters=False)
    assert canonical_value(float("inf")) == float("inf")
    assert canonical_value(1.0) == 1 and isinstance(canonical_value(1.0), int)
    assert canonical_value(1 / 3) == round(1 / 3, FLOAT_DIGITS)


def test_empty_results():
    assert results_match([], [], order_matters=False)
    assert results_match([], [], order_matters=True)
    assert not results_match([], [(1,)], order_matters=False)
    assert not results_match([(1,)], [], order_matters=False)


def test_shape_mismatch():
    assert not results_match([(1, 2)], [(1,)], order_matters=False)
    assert not results_match([(1,)], [(1,), (1,)], order_matters=False)


@pytest.mark.parametrize("sql,expected", [
    ("SELECT a FROM t ORDER BY a", True),
    ("select a from t order   by a desc limit 1", True),
    ("SELECT a FROM t UNION SELECT b FROM s ORDER BY 1", True),
    ("SELECT a FROM t", False),
    ("SELECT a FROM t WHERE a IN (SELECT b FROM s ORDER BY b LIMIT 1)", False),
    ("SELECT * FROM (SELECT a FROM t ORDER BY a)", False),
    ("SELECT rank() OVER (ORDER BY a) FROM t", False),
    ("SELECT 'order by' FROM t", False),
    ('SELECT "order by" FROM t', False),
    ("SELECT a FROM t -- ORDER BY a", False),
    ("SELECT a FROM t WHERE x = 'it''s' ORDER BY a", True),
])
def test_top_level_order_by(sql, expected):
    assert has_top_level_order_by(sql) is expected
