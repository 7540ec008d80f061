"""Generic question patterns over one table: a domain's entities become templates.

Each pattern is one SQL shape in Spider's style (`count(*)`, `T1`/`T2` aliases) with several
paraphrases. Nouns and column phrases come from the domain; `{v}`-style holes stay for
`fill.instantiate` to fill with values from the database. Patterns across foreign keys
live in `relations`.
"""

from __future__ import annotations

from typing import Iterator

from sqltrain.minibench.model import Domain, Entity, Template, article, plural

AGG_WORDS = {"avg": ("average", "mean"), "max": ("maximum", "highest"), "min": ("minimum", "lowest"), "sum": ("total",)}


class _Hole:
    """A value hole left in place by `fill`: `{v}`, `{r[0]}`, `{v:like}` come back unchanged."""

    def __init__(self, name: str):
        self.name = name

    def __getitem__(self, i: int) -> "_Hole":
        return _Hole(f"{self.name}[{i}]")

    def __format__(self, spec: str) -> str:
        return "{" + self.name + (":" + spec if spec else "") + "}"


class _Keep(dict):
    def __missing__(self, key: str) -> _Hole:
        return _Hole(key)


def fill(text: str, **words: str) -> str:
    """Put nouns into a phrase, keeping the value holes ({v}) for later."""
    return text.format_map(_Keep(words))


def fills(texts: tuple[str, ...], **words: str) -> tuple[str, ...]:
    return tuple(fill(t, **words) for t in texts)


class View:
    """An entity with the words and SQL fragments patterns need."""

    def __init__(self, domain: Domain, entity: Entity):
        self.e = entity
        self.spec = domain.table(entity.table)
        self.tab = entity.table
        self.pk = self.spec.pk
        self.noun = entity.noun
        self.plural = entity.plural
        self.lp = entity.label_phrase or (self.spec.col(entity.label[0]).words if entity.label else "")
        self.lps = plural(self.lp) if self.lp else ""

    def w(self, col: str) -> str:
        return self.spec.col(col).words

    def ws(self, col: str) -> str:
        return plural(self.w(col))

    def sel(self, alias: str = "") -> str:
        return ", ".join(f"{alias}.{c}" if alias else c for c in self.e.label)

    def match(self, alias: str, slot: str) -> str:
        """WHERE condition naming one row by its label (both columns of a two-column label)."""
        pre = f"{alias}." if alias else ""
        if len(self.e.label) == 1:
            return f"{pre}{self.e.label[0]} = {{{slot}}}"
        return " AND ".join(f"{pre}{c} = {{{slot}[{i}]}}" for i, c in enumerate(self.e.label))

    def labels(self, alias: str = "", source: str = "") -> str:
        """SQL listing label values (of rows in `source`, a FROM clause, when given)."""
        return f"SELECT DISTINCT {self.sel(alias)} FROM {source or self.tab}"


def _words(table: str, col: str):
    """Slot source: distinctive words (5+ letters) inside a text column, for LIKE questions."""
    def source(conn) -> list[tuple]:
        out = set()
        for (text,) in conn.execute(f"SELECT {col} FROM {table}"):
            out.update(w.strip(",.") for w in str(text).split() if len(w.strip(",.")) >= 5)
        return [(w,) for w in out]
    return source


def _middle(table: str, col: str):
    """Slot source: a column's values from the middle of its range, so `> x` filters keep some rows and drop some."""
    def source(conn) -> list[tuple]:
        vals = [v for (v,) in conn.execute(f"SELECT DISTINCT {col} FROM {table} ORDER BY {col}")]
        cut = len(vals) // 5
        return [(v,) for v in vals[cut:len(vals) - cut]]
    return source


def _ranges(table: str, col: str):
    """Slot source: (low, high) pairs of a column's values, about ten steps apart."""
    def source(conn) -> list[tuple]:
        vals = [v for (v,) in conn.execute(f"SELECT DISTINCT {col} FROM {table} ORDER BY {col}")]
        step = max(1, len(vals) // 10)
        return [(vals[i], vals[j]) for i in range(0, len(vals), step) for j in range(i + step, len(vals), step)]
    return source


def entity_templates(d: Domain, e: Entity) -> Iterator[Template]:
    v = View(d, e)
    yield from _counts(v)
    if e.label:
        yield from _label_filters(v)
        yield from _label_orders(v)
        yield from _label_nested(v)
    yield from _groups(v)
    yield from _aggregates(v)


def _counts(v: View) -> Iterator[Template]:
    w = dict(plural=v.plural, noun=v.noun, tab=v.tab)
    yield Template("count_all", fills((
        "How many {plural} are there?", "Count the number of {plural}.",
        "What is the total number of {plural}?", "Find the number of {plural}."), **w),
        f"SELECT count(*) FROM {v.tab}", instances=1)
    for c in v.e.categories:
        cw = dict(w, c=v.w(c), cs=v.ws(c))
        src = f"SELECT DISTINCT {c} FROM {v.tab}"
        yield Template("count_cat", fills((
            "How many {plural} have {c} {v}?", "Count the {plural} whose {c} is {v}.",
            "What is the number of {plural} with {c} {v}?", "How many {plural} are there with {c} equal to {v}?"), **cw),
            f"SELECT count(*) FROM {v.tab} WHERE {c} = {{v}}", (("v", src),))
        yield Template("distinct_cat", fills((
            "List the distinct {cs} of the {plural}.", "What are the different {cs} of the {plural}?",
            "Show all distinct {cs} that {plural} have."), **cw),
            f"SELECT DISTINCT {c} FROM {v.tab}", instances=1)
        yield Template("count_distinct", fills((
            "How many different {cs} do the {plural} have?", "Count the number of distinct {cs} among {plural}.",
            "How many distinct {cs} are there for {plural}?"), **cw),
            f"SELECT count(DISTINCT {c}) FROM {v.tab}", instances=1)


def _label_filters(v: View) -> Iterator[Template]:
    w = dict(plural=v.plural, noun=v.noun, lp=v.lp, lps=v.lps)
    sel, tab = v.sel(), v.tab
    for c in v.e.categories:
        cw = dict(w, c=v.w(c))
        src = f"SELECT DISTINCT {c} FROM {tab}"
        many = f"{src} WHERE (SELECT count(DISTINCT {c}) FROM {tab}) > 2"  # "a or b" must not mean "all"
        yield Template("filter_cat", fills((
            "What are the {lps} of the {plural} whose {c} is {v}?", "List the {lps} of {plural} with {c} {v}.",
            "Which {plural} have {c} {v}? Give their {lps}.", "Find the {lp} of every {noun} whose {c} is {v}."), **cw),
            f"SELECT {sel} FROM {tab} WHERE {c} = {{v}}", (("v", src),))
        yield Template("or_filter", fills((
            "Which {plural} have {c} {v} or {x}? Give their {lps}.",
            "List the {lps} of {plural} whose {c} is either {v} or {x}.",
            "Find the {lps} of all {plural} with {c} {v} or {c} {x}."), **cw),
            f"SELECT {sel} FROM {tab} WHERE {c} = {{v}} OR {c} = {{x}}", (("v", many), ("x", many)), 2)
        for m in v.e.measures:
            mw = dict(cw, m=v.w(m), ms=v.ws(m))
            yield Template("label_measure_filter", fills((
                "What are the {lps} and {ms} of the {plural} whose {c} is {v}?",
                "List the {lp} and {m} of each {noun} with {c} {v}.",
                "Show the {lps} and {ms} of all {plural} that have {c} {v}."), **mw),
                f"SELECT {sel}, {m} FROM {tab} WHERE {c} = {{v}}", (("v", src),), 2)
            yield Template("two_conditions", fills((
                "Which {plural} have {c} {v} and {m} greater than {x}? List their {lps}.",
                "Find the {lps} of {plural} whose {c} is {v} and whose {m} is above {x}.",
                "List the {lps} of {plural} with {c} {v} and {m} over {x}."), **mw),
                f"SELECT {sel} FROM {tab} WHERE {c} = {{v}} AND {m} > {{x}}",
                (("v", src), ("x", _middle(tab, m))), 2)
            yield Template("two_conditions_sorted", fills((
                "List the {lps} and {ms} of {plural} with {c} {v} and {m} above {x}, ordered by {m} descending.",
                "For {plural} whose {c} is {v} and whose {m} exceeds {x}, show the {lp} and {m}, highest {m} first."), **mw),
                f"SELECT {sel}, {m} FROM {tab} WHERE {c} = {{v}} AND {m} > {{x}} ORDER BY {m} DESC",
                (("v", src), ("x", _middle(tab, m))), 2)
    yield from _measure_filters(v)
    if v.e.words and len(v.e.label) == 1:
        lab = v.e.label[0]
        yield Template("like", fills((
            "Which {plural} have {lp_a} containing the word {v}?", "List the {lps} of {plural} whose {lp} contains {v}.",
            "Find all {plural} with {v} in their {lp}."), **w, lp_a=article(v.lp)),
            f"SELECT {lab} FROM {tab} WHERE {lab} LIKE {{v:like}}", (("v", _words(tab, lab)),))


def _measure_filters(v: View) -> Iterator[Template]:
    w = dict(plural=v.plural, noun=v.noun, lp=v.lp, lps=v.lps)
    sel, tab = v.sel(), v.tab
    for m in v.e.measures:
        mw = dict(w, m=v.w(m))
        src = _middle(tab, m)
        for op, more, above in ((">", "greater", "above"), ("<", "less", "below")):
            yield Template("compare", fills((
                "Which {plural} have {m} {more} than {v}? List their {lps}.",
                "Find the {lps} of {plural} whose {m} is {more} than {v}.",
                "What are the {lps} of the {plural} with {m} {above} {v}?"), **mw, more=more, above=above),
                f"SELECT {sel} FROM {tab} WHERE {m} {op} {{v}}", (("v", src),), 2)
        pairs = _ranges(tab, m)
        yield Template("between", fills((
            "Which {plural} have {m} between {r[0]} and {r[1]}? Give their {lps}.",
            "List the {lps} of {plural} whose {m} is between {r[0]} and {r[1]}."), **mw),
            f"SELECT {sel} FROM {tab} WHERE {m} BETWEEN {{r[0]}} AND {{r[1]}}", (("r", pairs),), 2)


def _label_orders(v: View) -> Iterator[Template]:
    w = dict(plural=v.plural, noun=v.noun, lp=v.lp, lps=v.lps)
    sel, tab = v.sel(), v.tab
    for m in v.e.measures:
        mw = dict(w, m=v.w(m), ms=v.ws(m))
        yield Template("order", fills((
            "List the {lps} of all {plural} in descending order of {m}.",
            "Sort the {plural} by {m} from highest to lowest and show their {lps}.",
            "Show the {lps} of the {plural}, ordered by {m} descending."), **mw),
            f"SELECT {sel} FROM {tab} ORDER BY {m} DESC", instances=1)
        yield Template("order", fills((
            "List the {lps} of all {plural} in ascending order of {m}.",
            "Sort the {plural} by {m} from lowest to highest and show their {lps}.",
            "Show the {lps} of the {plural} ordered by {m}."), **mw),
            f"SELECT {sel} FROM {tab} ORDER BY {m}", instances=1)
        yield Template("label_measure_order", fills((
            "List the {lp} and {m} of all {plural}, sorted by {m} in descending order.",
            "Show each {noun}'s {lp} and {m}, from the highest {m} to the lowest."), **mw),
            f"SELECT {sel}, {m} FROM {tab} ORDER BY {m} DESC", instances=1)
        for d, big, large in (("DESC", "highest", "largest"), ("ASC", "lowest", "smallest")):
            yield Template("superlative", fills((
                "Which {noun} has the {big} {m}? Give {its} {lp}.", "What is the {lp} of the {noun} with the {large} {m}?",
                "Find the {lp} of the {noun} whose {m} is the {big}.", "Return the {lp} of the {noun} with the {big} {m}."),
                **mw, big=big, large=large, its=v.e.pronoun),
                f"SELECT {sel} FROM {tab} ORDER BY {m} {d} LIMIT 1", instances=1)
            yield Template("top_k", fills((
                "List the {lps} of the {k} {plural} with the {big} {m}.",
                "What are the {lps} of the {k} {plural} that have the {big} {ms}?",
                "Show the {lps} of the {k} {plural} with the {large} {m}."), **mw, big=big, large=large),
                f"SELECT {sel} FROM {tab} ORDER BY {m} {d} LIMIT {{k}}", (("k", (3, 5)),), 1)


def _label_nested(v: View) -> Iterator[Template]:
    w = dict(plural=v.plural, noun=v.noun, lp=v.lp, lps=v.lps)
    sel, tab = v.sel(), v.tab
    for m in v.e.measures:
        mw = dict(w, m=v.w(m), ms=v.ws(m))
        for op, higher, above in ((">", "higher", "above"), ("<", "lower", "below")):
            yield Template("vs_average", fills((
                "Which {plural} have {m} {higher} than the average {m}? List their {lps}.",
                "Find the {lps} of {plural} whose {m} is {above} the average.",
                "What are the {lps} of the {plural} with {m} {higher} than the average {m} of all {plural}?"),
                **mw, higher=higher, above=above),
                f"SELECT {sel} FROM {tab} WHERE {m} {op} (SELECT avg({m}) FROM {tab})", instances=1)
        yield Template("vs_average_sorted", fills((
            "List the {lps} and {ms} of {plural} whose {m} is above average, from highest to lowest {m}.",
            "Show the {lp} and {m} of every {noun} with more than the average {m}, sorted by {m} descending."), **mw),
            f"SELECT {sel}, {m} FROM {tab} WHERE {m} > (SELECT avg({m}) FROM {tab}) ORDER BY {m} DESC", instances=1)
        for c in v.e.categories:
            cw = dict(mw, c=v.w(c))
            src = f"SELECT DISTINCT {c} FROM {tab}"
            yield Template("union", fills((
                "List the {lps} of {plural} that have {c} {v} or {m} above {x}.",
                "Which {plural} either have {c} {v} or {am} greater than {x}? Give their {lps}."), **cw, am=article(v.w(m))),
                f"SELECT {sel} FROM {tab} WHERE {c} = {{v}} UNION SELECT {sel} FROM {tab} WHERE {m} > {{x}}",
                (("v", src), ("x", _middle(tab, m))), 2)
            yield Template("except_filter", fills((
                "Which {plural} with {c} {v} do not have {m} above {x}? List their {lps}.",
                "Find the {lps} of {plural} whose {c} is {v}, excluding those with {m} greater than {x}."), **cw),
                f"SELECT {sel} FROM {tab} WHERE {c} = {{v}} EXCEPT SELECT {sel} FROM {tab} WHERE {m} > {{x}}",
                (("v", src), ("x", _middle(tab, m))), 2)


def _groups(v: View) -> Iterator[Template]:
    w = dict(plural=v.plural, noun=v.noun)
    tab = v.tab
    cats = v.e.categories
    for c in cats:
        cw = dict(w, c=v.w(c), cs=v.ws(c))
        yield Template("group_count", fills((
            "How many {plural} are there for each {c}?", "Show each {c} and the number of {plural} that have it.",
            "For each {c}, count the {plural}.", "List the {cs} and how many {plural} each has."), **cw),
            f"SELECT {c}, count(*) FROM {tab} GROUP BY {c}", instances=1)
        yield Template("having", fills((
            "Which {cs} have at least {k} {plural}?", "List the {cs} shared by {k} or more {plural}.",
            "Find the {cs} with at least {k} {plural}."), **cw),
            f"SELECT {c} FROM {tab} GROUP BY {c} HAVING count(*) >= {{k}}",
            (("k", f"SELECT DISTINCT count(*) FROM {tab} GROUP BY {c} HAVING count(*) > 1"),), 2)
        for d, most in (("DESC", "most"), ("ASC", "fewest")):
            yield Template("most_common", fills((
                "Which {c} has the {most} {plural}?", "Find the {c} shared by the {most} {plural}.",
                "What is the {c} with the {most} {plural}?"), **cw, most=most),
                f"SELECT {c} FROM {tab} GROUP BY {c} ORDER BY count(*) {d} LIMIT 1", instances=1)
        for c2 in cats:
            if c2 != c:
                c2w = dict(cw, c2=v.w(c2))
                src = f"SELECT DISTINCT {c2} FROM {tab}"
                yield Template("intersect", fills((
                    "Which {cs} have both {plural} with {c2} {v} and {plural} with {c2} {x}?",
                    "Find the {cs} that have {plural} whose {c2} is {v} as well as {plural} whose {c2} is {x}."), **c2w),
                    f"SELECT {c} FROM {tab} WHERE {c2} = {{v}} INTERSECT SELECT {c} FROM {tab} WHERE {c2} = {{x}}",
                    (("v", src), ("x", src)), 2)
        for m in v.e.measures:
            yield from _group_measures(v, c, m, cw)


def _group_measures(v: View, c: str, m: str, cw: dict) -> Iterator[Template]:
    tab = v.tab
    mw = dict(cw, m=v.w(m))
    for agg in ("avg", "max", "min") + (("sum",) if m in v.e.totals else ()):
        word = AGG_WORDS[agg][0]
        yield Template("group_agg", fills((
            "What is the {aw} {m} of {plural} for each {c}?", "For each {c}, find the {aw} {m} of the {plural}.",
            "Show each {c} together with the {aw} {m} of its {plural}."), **mw, aw=word),
            f"SELECT {c}, {agg}({m}) FROM {tab} GROUP BY {c}", instances=1)
    yield Template("best_group", fills((
        "Which {c} has the highest average {m}?", "Find the {c} whose {plural} have the highest average {m}.",
        "What is the {c} with the largest average {m} among its {plural}?"), **mw),
        f"SELECT {c} FROM {tab} GROUP BY {c} ORDER BY avg({m}) DESC LIMIT 1", instances=1)
    yield Template("filtered_most_common", fills((
        "Among {plural} with {m} above {x}, which {c} is the most common and how many such {plural} does it have?",
        "For {plural} whose {m} is greater than {x}, find the {c} with the most of them and the count."), **mw),
        f"SELECT {c}, count(*) FROM {tab} WHERE {m} > {{x}} GROUP BY {c} ORDER BY count(*) DESC LIMIT 1",
        (("x", _middle(tab, m)),), 2)
    yield Template("except_group", fills((
        "Which {cs} have no {plural} with {m} above {x}?",
        "List the {cs} of {plural}, except those that have some {noun} with {m} greater than {x}."), **mw),
        f"SELECT {c} FROM {tab} EXCEPT SELECT {c} FROM {tab} WHERE {m} > {{x}}",
        (("x", _middle(tab, m)),), 2)


def _aggregates(v: View) -> Iterator[Template]:
    w = dict(plural=v.plural, noun=v.noun)
    tab = v.tab
    for m in v.e.measures:
        mw = dict(w, m=v.w(m), ms=v.ws(m))
        for agg in ("avg", "max", "min") + (("sum",) if m in v.e.totals else ()):
            qs = tuple(fill(q, **mw, aw=word) for word in AGG_WORDS[agg] for q in (
                "What is the {aw} {m} of all {plural}?", "Find the {aw} {m} across all {plural}.",
                "What is the {aw} {m} of the {plural}?"))
            yield Template("aggregate", qs, f"SELECT {agg}({m}) FROM {tab}", instances=1)
        yield Template("max_min", fills((
            "What are the maximum and minimum {m} of all {plural}?", "Find the highest and lowest {m} among the {plural}.",
            "Show the largest and smallest {m} of {plural}."), **mw),
            f"SELECT max({m}), min({m}) FROM {tab}", instances=1)
        yield Template("avg_max", fills((
            "What are the average and maximum {m} of the {plural}?",
            "Give the average {m} and the highest {m} over all {plural}."), **mw),
            f"SELECT avg({m}), max({m}) FROM {tab}", instances=1)
        for c in v.e.categories:
            src = f"SELECT DISTINCT {c} FROM {tab}"
            yield Template("aggregate_filter", fills((
                "What is the average {m} of {plural} whose {c} is {v}?", "Find the average {m} of {plural} with {c} {v}.",
                "What is the mean {m} among {plural} that have {c} {v}?"), **mw, c=v.w(c)),
                f"SELECT avg({m}) FROM {tab} WHERE {c} = {{v}}", (("v", src),), 2)
