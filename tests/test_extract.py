"""SQL extraction from model output: the shapes real instruction-tuned models produce."""

from __future__ import annotations

import pytest

from sqltrain.generate.extract import extract_sql, first_statement, sql_complete

Q = "SELECT name FROM singer WHERE age > 30"

CASES = [
    # plain
    (Q, Q),
    ("  " + Q + "  \n", Q),
    (Q + ";", Q),
    (" " + Q + " ;\n", Q),
    # code fences
    (f"```sql\n{Q}\n```", Q),
    (f"```SQL\n{Q};\n```", Q),
    (f"```sqlite\n{Q}\n```\nThis query returns the names.", Q),
    ("```sqlite\nPRAGMA table_info(singer)\n```", "PRAGMA table_info(singer)"),
    (f"```\n{Q}\n```", Q),
    (f"Here is the query:\n\n```sql\n{Q}\n```\n\nIt selects singers older than 30.", Q),
    (f"```sql\n{Q}", Q),  # unclosed fence (generation stopped)
    (f"```sql {Q} ```", Q),  # one-line fence
    # prefixes
    (f"SQL: {Q}", Q),
    (f"SQL:\n{Q}", Q),
    (f"-- SQL: {Q}", Q),
    (f"SQLite query: {Q}", Q),
    (f"Answer: {Q}", Q),
    (f"Query:\n{Q};", Q),
    (f"The SQL query is: {Q};", Q),
    (f"To answer this we need the singers table. {Q}", Q),
    # trailing text and explanations
    (f"{Q}\n\nThis query selects all singers older than 30.", Q),
    (f"{Q}\nExplanation: we filter on age.", Q),
    (f"{Q}; -- names of old singers", Q),
    (f"{Q}\nThis returns the name of every singer above thirty.", Q),
    (f"{Q};\nThe result has one column.", Q),
    (f"{Q}\n### Explanation\nFilter by age.", Q),
    # multiple statements -> first
    (f"{Q}; SELECT count(*) FROM singer;", Q),
    (f"{Q};\nSELECT 1", Q),
    # ';' inside a string or comment is not a statement end
    ("SELECT * FROM t WHERE name = 'a;b'", "SELECT * FROM t WHERE name = 'a;b'"),
    ("SELECT * FROM t WHERE name = \"x;y\"; SELECT 2", "SELECT * FROM t WHERE name = \"x;y\""),
    # chat-template artifacts
    (f"{Q}<|im_end|>", Q),
    (f"<|im_start|>assistant\n{Q}<|im_end|>\n<|im_start|>user\nthanks", Q),
    (f"assistant\n{Q}", Q),
    (f"{Q}</s>", Q),
    (f"{Q}<|eot_id|>", Q),
    (f"{Q}<|endoftext|>garbage after eos", Q),
    (f"[/INST] {Q}", Q),
    (f"{Q}\nUser: what about age < 20?", Q),
    (f"{Q}\n-- Question: How old is the oldest singer?\n-- SQL: SELECT max(age) FROM singer", Q),
    # CTEs keep their WITH
    (
        "```sql\nWITH old AS (SELECT * FROM singer WHERE age > 30) SELECT name FROM old\n```",
        "WITH old AS (SELECT * FROM singer WHERE age > 30) SELECT name FROM old",
    ),
    ("Using a CTE with a filter:\nWITH x AS (SELECT 1) SELECT * FROM x;", "WITH x AS (SELECT 1) SELECT * FROM x"),
    # multi-line SQL is kept whole, including capitalized column lists
    (
        "SELECT\n  Name, Country, Age, Song_release_year\nFROM singer\nWHERE age > 30;\n\nDone.",
        "SELECT\n  Name, Country, Age, Song_release_year\nFROM singer\nWHERE age > 30",
    ),
    (
        "SELECT T1.name\nFROM singer AS T1\nJOIN concert AS T2 ON T1.id = T2.singer_id\nORDER BY T1.age DESC\nLIMIT 1",
        "SELECT T1.name\nFROM singer AS T1\nJOIN concert AS T2 ON T1.id = T2.singer_id\nORDER BY T1.age DESC\nLIMIT 1",
    ),
    # lowercase SQL
    ("select count(*) from singer;", "select count(*) from singer"),
    # nothing SQL-like: the stripped text is returned (evaluation reports it as an error)
    ("I don't know.", "I don't know."),
    ("", ""),
    ("<|im_end|>", ""),
]


@pytest.mark.parametrize("raw,expected", CASES)
def test_extract_sql(raw: str, expected: str) -> None:
    assert extract_sql(raw) == expected


def test_unterminated_string_falls_back_to_plain_split() -> None:
    assert first_statement("SELECT 'abc FROM t; SELECT 2") == "SELECT 'abc FROM t"


@pytest.mark.parametrize(
    "text,done",
    [
        ("", False),
        ("```sql\n", False),  # an opening fence is not the end
        ("Here is the query:\n\n", False),  # a blank line before the query is not the end
        ("SELECT name FROM singer", False),
        ("SELECT name FROM singer WHERE name = 'a;", False),  # ';' inside an open string
        ("SELECT name FROM singer;", True),
        ("```sql\nSELECT name FROM singer\n```", True),
        ("SELECT name FROM singer\n\n", True),
        ("Here is the query:\n\nSELECT 1\n", False),
        ("Here is the query:\n\nSELECT 1;", True),
        ("```sql\nSELECT 1;", True),
        ("CREATE TABLE singer (\n  id INT, -- e.g. 'a'; 'b'\n", False),  # ';' in a comment
        ("CREATE TABLE singer (\n  id INT\n);", True),  # a schema echo ends at its ';' too
        ("Sure; here's how:", False),  # prose, not SQL yet
        ("Sure; here is how:", False),
        ("```sql\nCREATE TABLE t (a INT);", True),
    ],
)
def test_sql_complete(text: str, done: bool) -> None:
    assert sql_complete(text) is done
