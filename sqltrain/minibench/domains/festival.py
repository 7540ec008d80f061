"""Dev domain: music festivals (venues, festivals, artists, performances), Spider's Capitalized_Style."""

from __future__ import annotations

import random

from sqltrain.minibench import words as W
from sqltrain.minibench.model import Bridge, Col, Domain, Entity, Link, TableSpec, Template

FESTIVAL_WORDS = ("Summer", "Electric", "Golden", "Harbor", "Desert", "Northern", "Midnight", "Blue", "Wild", "Coastal")
FESTIVAL_KINDS = ("Sound", "Beats", "Groove", "Echo", "Rhythm", "Vibes", "Waves", "Lights")
VENUE_KINDS = ("Park", "Arena", "Fields", "Grounds", "Beach", "Stadium")
GENRES = ("Rock", "Pop", "Jazz", "Electronic", "Hip Hop", "Folk", "Indie", "Blues")
STAGES = (("Main Stage", 5), ("River Stage", 3), ("Tent Stage", 3), ("Acoustic Stage", 2))
COUNTRIES = ("USA", "UK", "Canada", "Germany", "France", "Sweden", "Australia", "Japan", "Ireland", "Brazil")

TABLES = (
    TableSpec("venue", (Col("Venue_ID", "INTEGER"), Col("Venue_Name"), Col("City"), Col("Capacity", "INTEGER")), "Venue_ID"),
    TableSpec("festival", (Col("Festival_ID", "INTEGER"), Col("Festival_Name"), Col("Venue_ID", "INTEGER"),
                           Col("Year", "INTEGER"), Col("Attendance", "INTEGER"), Col("Ticket_Price", "REAL")),
              "Festival_ID", (("Venue_ID", "venue", "Venue_ID"),)),
    TableSpec("artist", (Col("Artist_ID", "INTEGER"), Col("Artist_Name"), Col("Country"), Col("Genre"),
                         Col("Debut_Year", "INTEGER"), Col("Is_Band", "BOOLEAN")), "Artist_ID"),
    TableSpec("performance", (Col("Performance_ID", "INTEGER"), Col("Festival_ID", "INTEGER"), Col("Artist_ID", "INTEGER"),
                              Col("Stage"), Col("Duration_Minutes", "INTEGER", "duration in minutes"), Col("Fee", "INTEGER")),
              "Performance_ID", (("Festival_ID", "festival", "Festival_ID"), ("Artist_ID", "artist", "Artist_ID"))),
)


def _band(rng: random.Random) -> str:
    return f"The {W.pick(rng, W.ADJECTIVES)} {W.pick(rng, W.NOUNS)}s"


def rows(rng: random.Random) -> dict[str, list[tuple]]:
    cities = [c for c, _ in W.CITIES]
    venues = [(i + 1, n, n.split()[0], rng.randrange(20, 900) * 100)
              for i, n in enumerate(W.unique(rng, 20, lambda r: f"{W.pick(r, cities)} {W.pick(r, VENUE_KINDS)}"))]
    used = W.some(rng, [v[0] for v in venues], 3)
    names = W.unique(rng, 40, lambda r: f"{W.pick(r, FESTIVAL_WORDS)} {W.pick(r, FESTIVAL_KINDS)} Festival")
    festivals = []
    for i, name in enumerate(names):
        venue = W.pick(rng, used)
        cap = venues[venue - 1][3]
        festivals.append((i + 1, name, venue, rng.randint(2015, 2024), rng.randrange(cap // 3, cap), W.money(rng, 35, 260, 5)))
    bands = W.unique(rng, 40, _band)
    solo = W.unique(rng, 40, W.full_name)
    artists = [(i + 1, n, W.pick(rng, COUNTRIES), W.pick(rng, GENRES), rng.randint(1970, 2022), int(i < 40))
               for i, n in enumerate(bands + solo)]
    rng.shuffle(artists)
    artists = [(i + 1,) + a[1:] for i, a in enumerate(artists)]
    playing = W.some(rng, [a[0] for a in artists], 10)
    performances = [(i + 1, W.pick(rng, [f[0] for f in festivals]), W.pick(rng, playing), W.weighted(rng, STAGES),
                     rng.choice((30, 45, 60, 75, 90, 120)), rng.randrange(5, 250) * 1000) for i in range(200)]
    return {"venue": venues, "festival": festivals, "artist": artists, "performance": performances}


_PLAYS = "performance AS T1 JOIN artist AS T2 ON T1.Artist_ID = T2.Artist_ID"
TEMPLATES = (
    Template("custom", ("How many artists are bands?", "Count the artists that are bands."),
             "SELECT count(*) FROM artist WHERE Is_Band = 1", instances=1),
    Template("custom", ("List the names of solo artists from {v}.", "Which artists from {v} are not bands? Give their names."),
             "SELECT Artist_Name FROM artist WHERE Country = {v} AND Is_Band = 0",
             (("v", "SELECT DISTINCT Country FROM artist"),), 2),
    Template("custom", ("What is the total fee paid to {v}?", "How much has {v} earned in performance fees?"),
             f"SELECT sum(T1.Fee) FROM {_PLAYS} WHERE T2.Artist_Name = {{v}}",
             (("v", f"SELECT DISTINCT T2.Artist_Name FROM {_PLAYS}"),), 3),
    Template("custom", ("Which festivals took place in {v}? Give their names and venues.",),
             "SELECT T1.Festival_Name, T2.Venue_Name FROM festival AS T1 JOIN venue AS T2 ON T1.Venue_ID = T2.Venue_ID "
             "WHERE T1.Year = {v}", (("v", "SELECT DISTINCT Year FROM festival"),), 2),
    Template("custom", ("Which genre earns the highest total performance fee?",),
             f"SELECT T2.Genre FROM {_PLAYS} GROUP BY T2.Genre ORDER BY sum(T1.Fee) DESC LIMIT 1", instances=1),
    Template("custom", ("What are the names of the artists who performed on the {v}?",
                        "List the artists that played on the {v}."),
             f"SELECT DISTINCT T2.Artist_Name FROM {_PLAYS} WHERE T1.Stage = {{v}}",
             (("v", "SELECT DISTINCT Stage FROM performance"),), 2),
    Template("custom", ("Which festivals sold tickets for less than {v} and had more than {x} visitors?",),
             "SELECT Festival_Name FROM festival WHERE Ticket_Price < {v} AND Attendance > {x}",
             (("v", (100, 150, 200)), ("x", (5000, 10000, 20000))), 2),
)

BRIDGE = Bridge("performance", ("Artist_ID", "artist"), ("Festival_ID", "festival"), {
    "a_of_b": ("Which artists performed at {v}?", "List the names of artists who played at {v}."),
    "b_of_a": ("At which festivals did {v} perform?", "List the names of festivals where {v} played."),
    "count_b": ("How many performances were there at {v}?",),
    "count_a": ("How many times has {v} performed?", "How many performances does {v} have?"),
    "count_a_of_b": ("How many different artists performed at {v}?",),
    "per_b": ("For each festival, show its name and the number of performances.",),
    "top_b": ("Which festival had the most performances?",),
    "top_a": ("Which artist has performed the most times?", "Find the name of the artist with the most performances."),
    "a_never": ("Which artists have never performed at a festival?", "List the names of artists with no performances."),
    "a_both": ("Which artists performed at both {v} and {x}?",),
    "a_of_bcat": ("Which artists performed at festivals held in {v}?",),
    "b_of_acat": ("Which festivals featured artists from {v}?", "List the names of festivals where artists from {v} performed."),
})

DOMAIN = Domain(
    "music_festival", TABLES, rows,
    entities=(
        Entity("venue", "venue", ("Venue_Name",), "name", categories=("City",), measures=("Capacity",)),
        Entity("festival", "festival", ("Festival_Name",), "name", categories=("Year",),
               measures=("Attendance", "Ticket_Price"), totals=("Attendance",)),
        Entity("artist", "artist", ("Artist_Name",), "name", categories=("Country", "Genre"), measures=("Debut_Year",)),
        Entity("performance", "performance", categories=("Stage",), measures=("Duration_Minutes", "Fee"), totals=("Fee",)),
    ),
    links=(Link("festival", "Venue_ID", "venue", "held at {}", ("Where was {v} held?", "What is the venue of {v}?")),),
    bridges=(BRIDGE,),
    templates=TEMPLATES,
)
