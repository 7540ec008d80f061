"""Word-level normalization shared by value matching and name matching.

Questions, database values and schema names are compared as sequences of lowercase word
tokens, so "O'Reilly", "o reilly" and "O-Reilly" meet, and "singer_id" / "SingerId" /
"singer id" all become ["singer", "id"].
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")

# Function words and question words that say nothing about which table or column is meant.
STOPWORDS = frozenset(
    """a an the of in on at to for from by with and or not no is are was were be been being do does did
    has have had what which who whom whose when where why how all any each every some many much more most
    less least than that this these those there their its it his her they them he she we you i me my our
    your as if then else into onto over under about also only just both either neither per s t
    give find show list return tell count number display""".split()
)


def words(text: str) -> list[str]:
    """Lowercase word tokens of free text (punctuation and underscores separate words)."""
    return _WORD.findall(text.lower())


def normalize_value(text: str) -> str:
    """The key a database value and a question n-gram are compared by."""
    return " ".join(words(text))


def name_words(name: str) -> list[str]:
    """Words of a schema identifier: snake_case, CamelCase and digit boundaries split."""
    return words(_CAMEL.sub(" ", name))


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A light suffix stripper, the same for questions and names: it only has to make
    "singers"/"singer", "countries"/"country", "movies"/"movie", "arriving"/"date_arrived" and
    "departure"/"date_departed" meet, not to produce real words."""
    w = word
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "i"  # "countries" and "movies" both lose the plural; "y" becomes "i" below
    elif len(w) > 4 and w.endswith(("sses", "ches", "shes", "xes", "zes")):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 3 and w.endswith("y") and w[-2] not in "aeiou":
        w = w[:-1] + "i"
    for suffix in ("ing", "ed", "al", "ure", "e"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls":
                w = w[:-1]  # "shipped" -> "shipp" -> "ship"
            break
    return w


def content_stems(tokens: list[str]) -> set[str]:
    """Stemmed tokens without stopwords: what a question or name is about."""
    return {stem(t) for t in tokens if t not in STOPWORDS}


def _implies(words_: str, meaning: str) -> dict[str, tuple[str, ...]]:
    return {w: tuple(meaning.split()) for w in words_.split()}


IMPLIED: dict[str, tuple[str, ...]] = {
    **_implies("old older oldest young younger youngest elder eldest", "age birth"),
    **_implies("born birthday", "birth"),
    **_implies("gender male female men women man woman", "sex gender"),
    **_implies("heavy heavier heaviest light lighter lightest weigh weighs weighed", "weight"),
    **_implies("tall taller tallest short shorter shortest", "height"),
    **_implies("expensive cheap cheaper cheapest costly", "price cost"),
    **_implies("populous", "population"),
    **_implies("earliest latest recent recently when", "date year time"),
    **_implies("long longer longest duration", "length duration minute"),
    **_implies("big bigger biggest large larger largest small smaller smallest", "size area capacity"),
    **_implies("earn earns paid salary", "salary"),
    **_implies("live lives living", "address city"),
}
"""Question words -> name words they point at ("oldest" -> age): the small vocabulary of
comparisons whose column the question never names."""


def implied_stems(tokens: list[str]) -> set[str]:
    """Name stems a question points at without spelling them (comparatives, years)."""
    out: set[str] = set()
    for t in tokens:
        out.update(stem(m) for m in IMPLIED.get(t, ()))
        if t.isdigit() and len(t) == 4 and 1000 <= int(t) <= 2100:
            out.update((stem("year"), stem("date")))
    return out
