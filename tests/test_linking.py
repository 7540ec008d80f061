"""Schema serialization, value index and schema linking (sqltrain.linking)."""

from __future__ import annotations

import json

import pytest

from sqltrain.config import load_config
from sqltrain.linking.gold import gold_references
from sqltrain.linking.linker import SchemaLinker
from sqltrain.linking.serialize import serialize_schema
from sqltrain.linking.value_index import build_value_index, load_value_index
from sqltrain.linking.words import stem
from sqltrain.spider.benchmark import SpiderBenchmark
from sqltrain.spider.schema import Column, ForeignKey, Schema, Table

FESTIVAL_DDL = """\
CREATE TABLE venue (
  Venue_ID INTEGER PRIMARY KEY, -- e.g. 1, 2
  Venue_Name TEXT, -- e.g. 'Madrid Grounds', 'Tokyo Park'
  City TEXT, -- e.g. 'Madrid', 'Tokyo'
  Capacity INTEGER -- e.g. 46200, 5200
);

CREATE TABLE festival (
  Festival_ID INTEGER PRIMARY KEY, -- e.g. 1, 2
  Festival_Name TEXT, -- e.g. 'Harbor Echo Festival', 'Desert Groove Festival'
  Venue_ID INTEGER, -- e.g. 4, 2
  Year INTEGER, -- e.g. 2017, 2016
  Attendance INTEGER, -- e.g. 32233, 3792
  Ticket_Price REAL, -- e.g. 160.0, 185.0
  FOREIGN KEY (Venue_ID) REFERENCES venue(Venue_ID)
);

CREATE TABLE artist (
  Artist_ID INTEGER PRIMARY KEY, -- e.g. 1, 2
  Artist_Name TEXT, -- e.g. 'Samuel Thomas', 'Maya Thomas'
  Country TEXT, -- e.g. 'Sweden', 'Ireland'
  Genre TEXT, -- e.g. 'Jazz', 'Indie'
  Debut_Year INTEGER, -- e.g. 2015, 1993
  Is_Band BOOLEAN -- e.g. 0, 1
);

CREATE TABLE performance (
  Performance_ID INTEGER PRIMARY KEY, -- e.g. 1, 2
  Festival_ID INTEGER, -- e.g. 27, 24
  Artist_ID INTEGER, -- e.g. 74, 54
  Stage TEXT, -- e.g. 'Main Stage', 'River Stage'
  Duration_Minutes INTEGER, -- e.g. 30, 90
  Fee INTEGER, -- e.g. 233000, 137000
  FOREIGN KEY (Festival_ID) REFERENCES festival(Festival_ID),
  FOREIGN KEY (Artist_ID) REFERENCES artist(Artist_ID)
);"""

FESTIVAL_COMPACT = """\
venue(Venue_ID PK, Venue_Name, City, Capacity)
festival(Festival_ID PK, Festival_Name, Venue_ID FK->venue.Venue_ID, Year, Attendance, Ticket_Price)
artist(Artist_ID PK, Artist_Name, Country, Genre, Debut_Year, Is_Band)
performance(Performance_ID PK, Festival_ID FK->festival.Festival_ID, Artist_ID FK->artist.Artist_ID, Stage, Duration_Minutes, Fee)"""


@pytest.fixture(scope="module")
def mini(mini_dir) -> SpiderBenchmark:
    return SpiderBenchmark(mini_dir)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("value_index")


@pytest.fixture(scope="module")
def count_tokens():
    from sqltrain.model.loading import load_tokenizer

    tok = load_tokenizer(load_config().model)
    return lambda texts: [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]


def index_of(bench: SpiderBenchmark, db_id: str, cache, k: int = 2):
    return load_value_index(bench.db_path(db_id), bench.schemas[db_id], 2000, k, cache)


def linker_of(bench, db_id, cache, count_tokens, fmt="ddl") -> SchemaLinker:
    return SchemaLinker(bench.schemas[db_id], index_of(bench, db_id, cache), fmt, count_tokens)


# -- serialization ---------------------------------------------------------------------------
def test_ddl_format_exact(mini, cache):
    schema = mini.schemas["music_festival"]
    assert serialize_schema(schema, "ddl", index_of(mini, "music_festival", cache)) == FESTIVAL_DDL


def test_compact_format_exact(mini, cache):
    schema = mini.schemas["music_festival"]
    assert serialize_schema(schema, "compact", index_of(mini, "music_festival", cache)) == FESTIVAL_COMPACT


def test_selection_shows_matches_and_only_fks_with_both_ends(mini, cache):
    schema, index = mini.schemas["music_festival"], index_of(mini, "music_festival", cache)
    selection = {"festival": {"Festival_ID", "Festival_Name", "Venue_ID"}, "performance": {"Performance_ID", "Festival_ID", "Artist_ID"}}
    matches = {("festival", "Festival_Name"): ["'Summer Echo Festival'"]}
    ddl = serialize_schema(schema, "ddl", index, selection, matches, annotated={("festival", "Festival_Name")})
    assert ddl == """\
CREATE TABLE festival (
  Festival_ID INTEGER PRIMARY KEY,
  Festival_Name TEXT, -- matches 'Summer Echo Festival'; e.g. 'Harbor Echo Festival', 'Desert Groove Festival'
  Venue_ID INTEGER
);

CREATE TABLE performance (
  Performance_ID INTEGER PRIMARY KEY,
  Festival_ID INTEGER,
  Artist_ID INTEGER,
  FOREIGN KEY (Festival_ID) REFERENCES festival(Festival_ID)
);"""
    compact = serialize_schema(schema, "compact", index, selection, matches)
    assert compact == (
        "festival(Festival_ID PK, Festival_Name ['Summer Echo Festival'], Venue_ID)\n"
        "performance(Performance_ID PK, Festival_ID FK->festival.Festival_ID, Artist_ID)"
    )


def test_quoted_names_composite_key_and_no_database():
    enrol = Table("Enrol", "enrol", (Column("Stu ID", "stu id", "number", True), Column("Course", "course", "text", True)))
    stu = Table("Stu", "stu", (Column("Stu ID", "stu id", "number", True), Column("Home-Town", "home town", "text")))
    schema = Schema("s", (stu, enrol), (ForeignKey("Enrol", "Stu ID", "Stu", "Stu ID"),))
    # Without a database: the coarse tables.json types, no sample values.
    assert serialize_schema(schema, "ddl") == """\
CREATE TABLE Stu (
  "Stu ID" number PRIMARY KEY,
  "Home-Town" text
);

CREATE TABLE Enrol (
  "Stu ID" number,
  Course text,
  PRIMARY KEY ("Stu ID", Course),
  FOREIGN KEY ("Stu ID") REFERENCES Stu("Stu ID")
);"""
    assert serialize_schema(schema, "compact") == (
        'Stu("Stu ID" PK, "Home-Town")\nEnrol("Stu ID" PK FK->Stu."Stu ID", Course PK)'
    )
    with pytest.raises(ValueError, match="unknown schema format"):
        serialize_schema(schema, "yaml")


# -- value index -----------------------------------------------------------------------------
def test_value_index_is_cached_by_file_hash_and_settings(mini, cache, monkeypatch):
    first = index_of(mini, "library", cache)
    files = sorted(cache.glob("library-*.json"))
    assert len(files) == 1
    import sqltrain.linking.value_index as vi

    monkeypatch.setattr(vi, "build_value_index", lambda *a, **k: pytest.fail("rebuilt despite a cache entry"))
    again = index_of(mini, "library", cache)
    assert [m.value for m in again.match("books by Mason Hill")] == [m.value for m in first.match("books by Mason Hill")]
    monkeypatch.undo()
    index_of(mini, "library", cache, k=1)  # another setting is another entry
    assert len(sorted(cache.glob("library-*.json"))) == 2


def test_value_index_is_bounded_per_column(mini):
    data = build_value_index(mini.db_path("library"), mini.schemas["library"], max_values=3, sample_values=2)
    assert data["values"], "library has text columns"
    assert all(len(values) <= 3 for _, _, values in data["values"])
    json.dumps(data)  # the cache entry is plain JSON


def test_value_matching_longest_ngram_and_plurals(mini, cache):
    index = index_of(mini, "music_festival", cache)
    hits = {(m.table, m.column, m.value) for m in index.match("How many performances does The Wild Mountains have?")}
    assert ("artist", "Artist_Name", "The Wild Mountains") in hits
    genres = {m.value for m in index.match("artists with genres Pops or Blues") if m.column == "Genre"}
    assert genres == {"Pop", "Blues"}  # "Pops" meets "Pop": both sides are stemmed alike
    assert index.match("how many are there") == []


def test_stemmer_meets_plural_and_participles():
    assert stem("countries") == stem("country") and stem("movies") == stem("movie")
    assert stem("arriving") == stem("arrived") and stem("departure") == stem("departed")


# -- gold references -------------------------------------------------------------------------
def test_gold_references_resolve_aliases_and_ignore_string_literals(mini):
    schema = mini.schemas["music_festival"]
    sql = ('SELECT t1.Artist_Name FROM artist AS T1 JOIN performance AS t2 ON T1.Artist_ID = T2.Artist_ID '
           'WHERE T2.Stage = "Main Stage" AND Fee > (SELECT avg(Fee) FROM performance)')
    tables, columns = gold_references(sql, schema)
    assert tables == {"artist", "performance"}
    assert columns == {("artist", "Artist_Name"), ("artist", "Artist_ID"), ("performance", "Artist_ID"),
                       ("performance", "Stage"), ("performance", "Fee")}


# -- linking ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("db_id", "question", "sql"),
    [
        # value match: nothing but the artist's name points at artist
        ("music_festival", "How many performances does The Wild Mountains have?",
         "SELECT count(*) FROM performance AS T1 JOIN artist AS T2 ON T1.Artist_ID = T2.Artist_ID WHERE T2.Artist_Name = 'The Wild Mountains'"),
        # value match two tables away: venue found by its name, festival on the FK path
        ("music_festival", "How many performances were given at Lisbon Stadium?",
         "SELECT count(*) FROM performance AS T1 JOIN festival AS T2 ON T1.Festival_ID = T2.Festival_ID "
         "JOIN venue AS T3 ON T2.Venue_ID = T3.Venue_ID WHERE T3.Venue_Name = 'Lisbon Stadium'"),
        # value match on a column the question never names (genre)
        ("library", "Find the names of authors that have some Romance books.",
         "SELECT name FROM authors WHERE author_id IN (SELECT author_id FROM books WHERE genre = 'Romance')"),
        # lexical: comparative -> age column
        ("flights", "What is the name of the oldest passenger?", "SELECT name FROM passengers ORDER BY age DESC LIMIT 1"),
        # lexical: table named in the plural, join through the bridge table
        ("flights", "Which airlines have flights longer than 500 minutes?",
         "SELECT DISTINCT T1.airline_name FROM airlines AS T1 JOIN flights AS T2 ON T1.airline_id = T2.airline_id "
         "WHERE T2.duration_minutes > 500"),
    ],
)
def test_linking_keeps_gold_tables_and_columns(mini, cache, count_tokens, db_id, question, sql):
    linker = linker_of(mini, db_id, cache, count_tokens)
    budget = 160
    result = linker.link(question, budget)
    assert result.pruned and result.tokens <= budget < result.full_tokens
    assert count_tokens([result.schema_text])[0] <= budget + 8  # the estimate is close to the real count
    tables, columns = gold_references(sql, mini.schemas[db_id])
    assert tables <= set(result.selection)
    assert all(c in result.selection[t] for t, c in columns), (columns, result.selection)
    assert result.selection != {t.name: {c.name for c in t.columns} for t in mini.schemas[db_id].tables}


def test_matched_values_are_shown(mini, cache, count_tokens):
    result = linker_of(mini, "music_festival", cache, count_tokens).link("Which festivals are held at Lisbon Stadium?", 160)
    assert result.matches == {("venue", "Venue_Name"): ["'Lisbon Stadium'"]}
    line = next(x for x in result.schema_text.splitlines() if "Venue_Name" in x)
    assert line.endswith("-- matches 'Lisbon Stadium'") or "-- matches 'Lisbon Stadium';" in line


def test_whole_schema_kept_when_it_fits_and_linking_is_deterministic(mini, cache, count_tokens):
    linker = linker_of(mini, "flights", cache, count_tokens)
    whole = linker.link("How many flights are there?", 10_000)
    assert not whole.pruned and whole.tokens == whole.full_tokens
    assert whole.schema_text == serialize_schema(mini.schemas["flights"], "ddl", index_of(mini, "flights", cache))
    assert linker.link("How many flights are there?", None).schema_text == whole.schema_text
    fresh = linker_of(mini, "flights", cache, count_tokens)
    for budget in (60, 120, 200):
        assert fresh.link("Which airlines fly from Boston?", budget) == linker.link("Which airlines fly from Boston?", budget)


@pytest.mark.parametrize("fmt", ["ddl", "compact"])
def test_the_budget_prices_the_pieces_the_text_is_made_of(mini, cache, count_tokens, fmt):
    """One source of schema text: pruning sums the prices of exactly the pieces that are
    rendered. With this (GPT-2-style) tokenizer the DDL sum is the joined text's exact count,
    and the compact one never undercounts it."""
    for q in mini.examples("dev"):
        linker = linker_of(mini, q.db_id, cache, count_tokens, fmt)
        for budget in (60, 160, None):
            result = linker.link(q.question, budget)
            assert "".join(result.pieces) == result.schema_text
            assert result.tokens == sum(count_tokens(list(result.pieces)))
            real = count_tokens([result.schema_text])[0]
            assert real == result.tokens if fmt == "ddl" else real <= result.tokens
            assert budget is None or not result.pruned or result.tokens <= budget or len(result.selection) == 1


def test_line_breaks_are_cut_where_the_tokenizer_cuts_them(mini, cache, count_tokens):
    from sqltrain.linking.serialize import SchemaRenderer

    schema, index = mini.schemas["flights"], index_of(mini, "flights", cache)
    lead, trail = (SchemaRenderer(schema, "ddl", index, breaks) for breaks in ("lead", "trail"))
    assert lead.render() == trail.render() and lead.pieces() != trail.pieces()
    exact = count_tokens([lead.render()])[0]
    assert sum(count_tokens(lead.pieces())) == exact < sum(count_tokens(trail.pieces()))  # "\n " is one token
    assert linker_of(mini, "flights", cache, count_tokens).renderer.breaks == "lead"


def test_compact_format_links_too(mini, cache, count_tokens):
    linker = linker_of(mini, "flights", cache, count_tokens, fmt="compact")
    result = linker.link("What is the name of the oldest passenger?", 30)
    assert result.pruned and "passengers" in result.selection and len(result.selection) < 5
    assert "passengers(passenger_id PK, name, nationality, age)" in result.schema_text.splitlines()


@pytest.mark.spider
def test_linking_on_spider_hand_picked(spider_dir, cache, count_tokens):
    bench = SpiderBenchmark(spider_dir)
    cases = [  # (db, question, gold SQL): value matches carry the first two
        ("car_1", "How many car models are produced in the usa?",
         "SELECT count(*) FROM MODEL_LIST AS T1 JOIN CAR_MAKERS AS T2 ON T1.Maker = T2.Id "
         "JOIN COUNTRIES AS T3 ON T2.Country = T3.CountryId WHERE T3.CountryName = 'usa'"),
        ("dog_kennels", "Which states have both owners and professionals living there?",
         "SELECT state FROM Owners INTERSECT SELECT state FROM Professionals"),
        ("world_1", "What are the names of all the countries that became independent after 1950?",
         "SELECT Name FROM country WHERE IndepYear > 1950"),
    ]
    for db_id, question, sql in cases:
        result = linker_of(bench, db_id, cache, count_tokens).link(question, 300)
        assert result.pruned
        tables, columns = gold_references(sql, bench.schemas[db_id])
        assert tables <= set(result.selection), (db_id, question)
        assert all(c in result.selection[t] for t, c in columns), (db_id, question)
