"""Compare two query results with test-suite semantics (Zhong et al., 2020).

* A result is a multiset (bag) of rows: duplicates count, row order does not ...
* ... unless the gold SQL has a top-level ORDER BY; then the row sequences must be equal.
  An ORDER BY inside a subquery or a window does not order the final result.
* Columns may come in any order, but one column permutation must hold for every row
  (``SELECT a, b`` matches ``SELECT b, a``). Column names never matter.
* Values: ``1 == 1.0`` (SQLite returns integral aggregates either way); NULL equals NULL;
  text is compared exactly (case and surrounding spaces matter) and never equals a number;
  floats are rounded to ``FLOAT_DIGITS`` significant digits first, so sums computed in another
  order or by another SQLite version (they differ in the last digits) still match.
* Two empty results match whatever their columns.

Rounding, not a tolerance window, keeps values hashable so bags compare in linear time; the price
is that two floats straddling a rounding boundary (x.xxx…5) differ. With 12 digits that needs a
disagreement in the 12th significant digit exactly at a boundary.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

FLOAT_DIGITS = 12
MAX_SEARCH_STEPS = 10_000
"""Partial column mappings tried before giving up (counted as a mismatch); only hostile results
with many look-alike columns get near it."""


def canonical_value(v):
    """The value used for comparison: floats rounded, integral floats as ints."""
    if isinstance(v, float):
        if v.is_integer():
            return int(v)
        return float(f"{v:.{FLOAT_DIGITS}g}")  # inf and -inf pass through
    return v


def canonical_rows(rows: Sequence[tuple]) -> list[tuple]:
    return [tuple(canonical_value(v) for v in row) for row in rows]


def results_match(gold: Sequence[tuple], pred: Sequence[tuple], order_matters: bool) -> bool:
    """True when `pred` equals `gold` as a bag (or sequence) of rows up to a column permutation."""
    if not gold and not pred:
        return True
    if len(gold) != len(pred) or len(gold[0]) != len(pred[0]):
        return False
    if _same_rows(gold, pred, order_matters):
        return True  # equal raw values stay equal after rounding: the common case, nothing to do
    g, p = canonical_rows(gold), canonical_rows(pred)
    if _same_rows(g, p, order_matters):
        return True
    if len(g[0]) == 1:
        return False
    return _find_mapping(g, p, order_matters)


def _same_rows(g: Sequence[tuple], p: Sequence[tuple], order_matters: bool) -> bool:
    return list(g) == list(p) if order_matters else Counter(g) == Counter(p)


def _find_mapping(g: list[tuple], p: list[tuple], order_matters: bool) -> bool:
    """Search column mappings gold column -> pred column, pruning on partial projections.

    A pred column can stand for a gold column only if both hold the same bag of values.
    Identical gold columns map to identical pred columns, so each class of identical columns
    is matched once instead of trying all its orderings.
    """
    g_cols, p_cols = list(zip(*g)), list(zip(*p))
    g_reps = _column_classes(g_cols)
    p_reps = _column_classes(p_cols)
    if sorted(len(v) for v in g_reps.values()) != sorted(len(v) for v in p_reps.values()):
        return False
    p_by_bag: dict[frozenset, list[tuple]] = {}
    for col, members in p_reps.items():
        p_by_bag.setdefault(_bag(col), []).append(col)
    candidates = [(col, len(members), p_by_bag.get(_bag(col), [])) for col, members in g_reps.items()]
    candidates.sort(key=lambda c: len(c[2]))
    steps = [0]
    return _extend(candidates, 0, [], [], p_reps, order_matters, steps)


def _extend(candidates, depth, g_chosen, p_chosen, p_reps, order_matters, steps) -> bool:
    if depth == len(candidates):
        return True
    g_col, size, options = candidates[depth]
    for p_col in options:
        if p_col in p_chosen or len(p_reps[p_col]) != size:
            continue
        steps[0] += 1
        if steps[0] > MAX_SEARCH_STEPS:
            return False
        gs, ps = g_chosen + [g_col], p_chosen + [p_col]
        if _projections_equal(gs, ps, order_matters) and _extend(
            candidates, depth + 1, gs, ps, p_reps, order_matters, steps
        ):
            return True
    return False


def _projections_equal(g_cols: list[tuple], p_cols: list[tuple], order_matters: bool) -> bool:
    return _same_rows(list(zip(*g_cols)), list(zip(*p_cols)), order_matters)


def _column_classes(cols: list[tuple]) -> dict[tuple, list[int]]:
    """Distinct column vectors -> positions holding them."""
    out: dict[tuple, list[int]] = {}
    for i, col in enumerate(cols):
        out.setdefault(col, []).append(i)
    return out


def _bag(col: tuple) -> frozenset:
    return frozenset(Counter(col).items())


# -- ORDER BY detection ---------------------------------------------------------------------------
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


@lru_cache(maxsize=65536)
def has_top_level_order_by(sql: str) -> bool:
    """True when the query's final result is ordered: an ORDER BY outside every parenthesis.

    Uses sqlglot's tokenizer (strings, quoted names and comments are skipped correctly); when
    the text does not tokenize, falls back to the reference evaluator's substring test.
    """
    from sqlglot.errors import TokenError
    from sqlglot.tokens import TokenType

    if not _ORDER_BY.search(sql):
        return False
    try:
        tokens = _tokenizer().tokenize(sql)
    except TokenError:
        return True
    depth = 0
    for tok in tokens:
        if tok.token_type == TokenType.L_PAREN:
            depth += 1
        elif tok.token_type == TokenType.R_PAREN:
            depth -= 1
        elif tok.token_type == TokenType.ORDER_BY and depth == 0:
            return True
    return False


@lru_cache(maxsize=1)
def _tokenizer():
    from sqlglot.dialects.sqlite import SQLite

    return SQLite.tokenizer_class()
