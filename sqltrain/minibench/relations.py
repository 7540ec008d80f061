"""Question patterns across foreign keys: parent/child links and bridge (event) tables."""

from __future__ import annotations

from typing import Iterator

from sqltrain.minibench.model import Bridge, Domain, Link, Template, article, plural
from sqltrain.minibench.patterns import View, fills


def link_templates(d: Domain, link: Link) -> Iterator[Template]:
    c, p = View(d, d.entity(link.child)), View(d, d.entity(link.parent))
    join = f"{c.tab} AS T1 JOIN {p.tab} AS T2 ON T1.{link.fk} = T2.{p.pk}"
    if p.e.label:
        yield from _by_parent(c, p, link, join)
        yield from _parent_sets(c, p, link, join)
    for pc in p.e.categories:
        yield from _by_parent_category(c, p, link, join, pc)
    if link.owner and c.e.label and p.e.label:
        yield Template("owner", link.owner, f"SELECT {p.sel('T2')} FROM {join} WHERE {c.match('T1', 'v')}",
                       (("v", c.labels("T1", join)),), 2)


def _words(c: View, p: View, link: Link) -> dict[str, str]:
    rn = link.noun or c.noun
    return dict(cp=c.plural, cn=c.noun, clps=c.lps, clp=c.lp, pn=p.noun, pp=p.plural, plp=p.lp, plps=p.lps,
                rn=rn, rp=plural(rn), its=p.e.pronoun, cits=c.e.pronoun)


def _rel(link: Link, ref: str) -> str:
    return link.rel.replace("{}", ref)


def _by_parent(c: View, p: View, link: Link, join: str) -> Iterator[Template]:
    w = dict(_words(c, p, link), rel=_rel(link, "{v}"))
    slot = (("v", p.labels("T2", join)),)
    where = f"WHERE {p.match('T2', 'v')}"
    if c.e.label:
        yield Template("children_of", fills((
            "What are the {clps} of the {cp} {rel}?", "List the {clps} of all {cp} {rel}.",
            "Which {cp} are {rel}? Give their {clps}."), **w),
            f"SELECT {c.sel('T1')} FROM {join} {where}", slot, 2)
        bare = link.rel.replace("{}", "").strip()
        subject = "they are" if c.e.pronoun == "their" else "it is"
        pairs = ("Show the {clp} of every {cn} and the {plp} of the {pn} {subject} {bare}.",)
        if not link.noun:  # "its airport" is ambiguous when a child has two keys into one table
            pairs += ("List each {cn}'s {clp} together with the {plp} of {cits} {pn}.",)
        yield Template("pairs", fills(pairs, **w, subject=subject, bare=bare),
                       f"SELECT {c.sel('T1')}, {p.sel('T2')} FROM {join}", instances=1)
    yield Template("count_children", fills((
        "How many {cp} are {rel}?", "Count the {cp} {rel}.", "What is the number of {cp} {rel}?"), **w),
        f"SELECT count(*) FROM {join} {where}", slot, 2)
    yield Template("per_parent_count", fills((
        "For each {pn}, how many {rp} are there? Show the {plp} and the count.",
        "How many {rp} does each {pn} have? Give the {plp} and the number.",
        "Show the {plp} of every {pn} and the number of {rp}."), **w),
        f"SELECT {p.sel('T2')}, count(*) FROM {join} GROUP BY T1.{link.fk}", instances=1)
    ks = f"SELECT DISTINCT count(*) FROM {c.tab} GROUP BY {link.fk} HAVING count(*) > 1"
    yield Template("parents_having", fills((
        "Which {pp} have at least {k} {rp}? Give their {plps}.", "List the {plps} of {pp} with {k} or more {rp}.",
        "Find the {plps} of the {pp} that have {k} {rp} or more."), **w),
        f"SELECT {p.sel('T2')} FROM {join} GROUP BY T1.{link.fk} HAVING count(*) >= {{k}}", (("k", ks),), 2)
    yield Template("top_parent", fills((
        "Which {pn} has the most {rp}? Give {its} {plp}.", "What is the {plp} of the {pn} with the largest number of {rp}?",
        "Find the {plp} of the {pn} that has the most {rp}."), **w),
        f"SELECT {p.sel('T2')} FROM {join} GROUP BY T1.{link.fk} ORDER BY count(*) DESC LIMIT 1", instances=1)
    for m in c.e.measures:
        mw = dict(w, m=c.w(m))
        yield Template("per_parent_avg", fills((
            "What is the average {m} of the {rp} of each {pn}? Show the {plp} and the average.",
            "For each {pn}, give {its} {plp} and the average {m} of {its} {rp}."), **mw),
            f"SELECT {p.sel('T2')}, avg(T1.{m}) FROM {join} GROUP BY T1.{link.fk}", instances=1)
        yield Template("top_parent_avg", fills((
            "Which {pn} has {rp} with the highest average {m}? Give {its} {plp}.",
            "Find the {plp} of the {pn} whose {rp} have the largest average {m}."), **mw),
            f"SELECT {p.sel('T2')} FROM {join} GROUP BY T1.{link.fk} ORDER BY avg(T1.{m}) DESC LIMIT 1", instances=1)
        if c.e.label:
            yield from _sorted_children(c, p, link, join, m, mw)


def _sorted_children(c: View, p: View, link: Link, join: str, m: str, mw: dict) -> Iterator[Template]:
    for cc in c.e.categories:
        src = f"SELECT DISTINCT {cc} FROM {c.tab}"
        yield Template("children_sorted", fills((
            "For {cp} with {cc} {v}, list their {clp} and the {plp} of their {pn}, ordered by {m} descending.",
            "Show the {clp} and {pn} {plp} of every {cn} whose {cc} is {v}, from the highest {m} to the lowest."),
            **mw, cc=c.w(cc)),
            f"SELECT {c.sel('T1')}, {p.sel('T2')} FROM {join} WHERE T1.{cc} = {{v}} ORDER BY T1.{m} DESC",
            (("v", src),), 2)


def _parent_sets(c: View, p: View, link: Link, join: str) -> Iterator[Template]:
    w = _words(c, p, link)
    qs = fills(("Which {pp} have no {rp}? List their {plps}.", "Find the {plps} of {pp} that do not have any {rp}.",
                "List the {plps} of all {pp} without {rp}."), **w)
    yield Template("parents_without", qs, f"SELECT {p.sel()} FROM {p.tab} WHERE {p.pk} NOT IN (SELECT {link.fk} FROM {c.tab})",
                   instances=1)
    yield Template("parents_without", qs, f"SELECT {p.sel()} FROM {p.tab} EXCEPT SELECT {p.sel('T2')} FROM {join}",
                   instances=1)
    for cc in c.e.categories:
        cw = dict(w, c=c.w(cc))
        src = f"SELECT DISTINCT {cc} FROM {c.tab}"
        yield Template("parents_with", fills((
            "Which {pp} have at least one {rn} with {c} {v}? Give their {plps}.",
            "Find the {plps} of {pp} that have {rp} whose {c} is {v}."), **cw),
            f"SELECT {p.sel()} FROM {p.tab} WHERE {p.pk} IN (SELECT {link.fk} FROM {c.tab} WHERE {cc} = {{v}})",
            (("v", src),), 2)
        yield Template("parents_both", fills((
            "Which {pp} have both {rp} with {c} {v} and {rp} with {c} {x}? Give their {plps}.",
            "Find the {plps} of the {pp} that have {rp} whose {c} is {v} as well as {rp} whose {c} is {x}."), **cw),
            f"SELECT {p.sel('T2')} FROM {join} WHERE T1.{cc} = {{v}} INTERSECT "
            f"SELECT {p.sel('T2')} FROM {join} WHERE T1.{cc} = {{x}}", (("v", src), ("x", src)), 2)
        yield Template("parents_but_not", fills((
            "Which {pp} have {rp} with {c} {v} but none with {c} {x}? Give their {plps}.",
            "Find the {plps} of {pp} that have some {rn} whose {c} is {v} and no {rn} whose {c} is {x}."), **cw),
            f"SELECT {p.sel('T2')} FROM {join} WHERE T1.{cc} = {{v}} EXCEPT "
            f"SELECT {p.sel('T2')} FROM {join} WHERE T1.{cc} = {{x}}", (("v", src), ("x", src)), 2)


def _by_parent_category(c: View, p: View, link: Link, join: str, pc: str) -> Iterator[Template]:
    word = p.w(pc)
    one = _rel(link, f"{article(p.noun)} whose {word} is {{v}}")
    many = _rel(link, f"{p.plural} with {word} {{v}}")
    w = dict(cp=c.plural, clps=c.lps, one=one, many=many)
    slot = (("v", f"SELECT DISTINCT T2.{pc} FROM {join}"),)
    if c.e.label:
        yield Template("children_by_parent_cat", fills((
            "What are the {clps} of the {cp} {one}?", "List the {clps} of the {cp} {many}."), **w),
            f"SELECT {c.sel('T1')} FROM {join} WHERE T2.{pc} = {{v}}", slot, 2)
    yield Template("count_by_parent_cat", fills((
        "How many {cp} are {many}?", "Count the {cp} {one}."), **w),
        f"SELECT count(*) FROM {join} WHERE T2.{pc} = {{v}}", slot, 2)


# -- bridges -------------------------------------------------------------------------------

def bridge_templates(d: Domain, b: Bridge) -> Iterator[Template]:
    """Patterns over A -- X -- B; each runs only if the bridge words it (Bridge.phrases)."""
    (afk, at), (bfk, bt) = b.a, b.b
    a, bb = View(d, d.entity(at)), View(d, d.entity(bt))
    x = b.table
    three = f"{at} AS T1 JOIN {x} AS T2 ON T1.{a.pk} = T2.{afk} JOIN {bt} AS T3 ON T2.{bfk} = T3.{bb.pk}"
    to_b = f"{x} AS T1 JOIN {bt} AS T2 ON T1.{bfk} = T2.{bb.pk}"
    to_a = f"{x} AS T1 JOIN {at} AS T2 ON T1.{afk} = T2.{a.pk}"
    b_slot = (("v", bb.labels("T3", three)),)
    a_slot = (("v", a.labels("T1", three)),)
    shapes = {
        "a_of_b": (f"SELECT DISTINCT {a.sel('T1')} FROM {three} WHERE {bb.match('T3', 'v')}", b_slot, 2),
        "b_of_a": (f"SELECT DISTINCT {bb.sel('T3')} FROM {three} WHERE {a.match('T1', 'v')}", a_slot, 2),
        "count_b": (f"SELECT count(*) FROM {to_b} WHERE {bb.match('T2', 'v')}", (("v", bb.labels("T2", to_b)),), 2),
        "count_a": (f"SELECT count(*) FROM {to_a} WHERE {a.match('T2', 'v')}", (("v", a.labels("T2", to_a)),), 2),
        "count_a_of_b": (f"SELECT count(DISTINCT T1.{afk}) FROM {to_b} WHERE {bb.match('T2', 'v')}",
                         (("v", bb.labels("T2", to_b)),), 2),
        "per_b": (f"SELECT {bb.sel('T2')}, count(*) FROM {to_b} GROUP BY T1.{bfk}", (), 1),
        "per_a": (f"SELECT {a.sel('T2')}, count(*) FROM {to_a} GROUP BY T1.{afk}", (), 1),
        "top_b": (f"SELECT {bb.sel('T2')} FROM {to_b} GROUP BY T1.{bfk} ORDER BY count(*) DESC LIMIT 1", (), 1),
        "top_a": (f"SELECT {a.sel('T2')} FROM {to_a} GROUP BY T1.{afk} ORDER BY count(*) DESC LIMIT 1", (), 1),
        "a_never": (f"SELECT {a.sel()} FROM {at} WHERE {a.pk} NOT IN (SELECT {afk} FROM {x})", (), 1),
        "b_never": (f"SELECT {bb.sel()} FROM {bt} WHERE {bb.pk} NOT IN (SELECT {bfk} FROM {x})", (), 1),
        "a_both": (f"SELECT {a.sel('T1')} FROM {three} WHERE {bb.match('T3', 'v')} INTERSECT "
                   f"SELECT {a.sel('T1')} FROM {three} WHERE {bb.match('T3', 'x')}",
                   (("v", bb.labels("T3", three)), ("x", bb.labels("T3", three))), 2),
    }
    for cat in bb.e.categories[:1]:
        src = (("v", f"SELECT DISTINCT T3.{cat} FROM {three}"),)
        shapes["a_of_bcat"] = (f"SELECT DISTINCT {a.sel('T1')} FROM {three} WHERE T3.{cat} = {{v}}", src, 2)
    for cat in a.e.categories[:1]:
        src = (("v", f"SELECT DISTINCT T1.{cat} FROM {three}"),)
        shapes["b_of_acat"] = (f"SELECT DISTINCT {bb.sel('T3')} FROM {three} WHERE T1.{cat} = {{v}}", src, 2)
    for name, questions in sorted(b.phrases.items()):
        if name not in shapes:
            raise KeyError(f"{d.db_id}: bridge {x} words unknown pattern {name!r}; known: {sorted(shapes)}")
        sql, slots, n = shapes[name]
        yield Template(f"bridge_{name}", questions, sql, slots, n)
