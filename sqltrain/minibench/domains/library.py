"""Train domain: a public library (authors, books, members, loans)."""

from __future__ import annotations

import random

from sqltrain.minibench import words as W
from sqltrain.minibench.model import Bridge, Col, Domain, Entity, Link, TableSpec, Template

GENRES = ("Fiction", "Mystery", "Science Fiction", "Fantasy", "Biography", "History", "Poetry", "Romance")
NATIONS = ("American", "British", "French", "German", "Japanese", "Italian", "Canadian", "Irish")
MEMBER_CITIES = ("Boston", "Cambridge", "Somerville", "Quincy", "Newton", "Brookline", "Medford", "Salem")

TABLES = (
    TableSpec("authors", (Col("author_id", "INTEGER"), Col("name"), Col("nationality"),
                          Col("birth_year", "INTEGER")), "author_id"),
    TableSpec("books", (Col("book_id", "INTEGER"), Col("title"), Col("author_id", "INTEGER"), Col("genre"),
                        Col("pages", "INTEGER", "number of pages"), Col("publication_year", "INTEGER"),
                        Col("price", "REAL")), "book_id", (("author_id", "authors", "author_id"),)),
    TableSpec("members", (Col("member_id", "INTEGER"), Col("first_name"), Col("last_name"), Col("city"),
                          Col("membership_date", "DATE")), "member_id"),
    TableSpec("loans", (Col("loan_id", "INTEGER"), Col("book_id", "INTEGER"), Col("member_id", "INTEGER"),
                        Col("loan_date", "DATE"), Col("due_date", "DATE"), Col("returned", "BOOLEAN")),
              "loan_id", (("book_id", "books", "book_id"), ("member_id", "members", "member_id"))),
)


def _title(rng: random.Random) -> str:
    adj, noun, city = W.pick(rng, W.ADJECTIVES), W.pick(rng, W.NOUNS), W.pick(rng, W.CITIES)[0]
    shapes = (f"The {adj} {noun}", f"{noun} of {city}", f"A {noun} in {city}", f"The {noun} and the {W.pick(rng, W.NOUNS)}",
              f"{adj} {noun}s")
    return W.pick(rng, shapes)


def rows(rng: random.Random) -> dict[str, list[tuple]]:
    names = W.unique(rng, 40, W.full_name)
    authors = [(i + 1, n, W.pick(rng, NATIONS), rng.randint(1920, 1995)) for i, n in enumerate(names)]
    writing = W.some(rng, [a[0] for a in authors], 5)
    books = []
    for i, title in enumerate(W.unique(rng, 120, _title)):
        author = W.pick(rng, writing)
        born = authors[author - 1][3]
        books.append((i + 1, title, author, W.pick(rng, GENRES), rng.randint(90, 900),
                       rng.randint(born + 25, min(born + 80, 2024)), W.money(rng, 6, 45)))
    people = W.unique(rng, 60, W.person)
    members = [(i + 1, f, l, W.pick(rng, MEMBER_CITIES), W.day(rng, "2015-01-01", "2023-12-31"))
               for i, (f, l) in enumerate(people)]
    borrowers = W.some(rng, [m[0] for m in members], 6)
    lent = W.some(rng, [b[0] for b in books], 20)
    loans = []
    for i in range(200):
        date = W.day(rng, "2023-01-01", "2024-12-31")
        loans.append((i + 1, W.pick(rng, lent), W.pick(rng, borrowers), date, W.plus_days(date, 21),
                      int(rng.random() < 0.8)))
    return {"authors": authors, "books": books, "members": members, "loans": loans}


MEMBER = ("first_name", "last_name")
TEMPLATES = (
    Template("custom", ("How many loans have not been returned yet?", "Count the loans that are still not returned."),
             "SELECT count(*) FROM loans WHERE returned = 0", instances=1),
    Template("custom", ("What are the titles of the books that are currently on loan and not returned?",
                        "List the titles of books with an unreturned loan."),
             "SELECT DISTINCT T2.title FROM loans AS T1 JOIN books AS T2 ON T1.book_id = T2.book_id WHERE T1.returned = 0",
             instances=1),
    Template("custom", ("How many loans were made in {v}?", "Count the loans whose loan date is in {v}."),
             "SELECT count(*) FROM loans WHERE loan_date LIKE {v:prefix}",
             (("v", "SELECT DISTINCT substr(loan_date, 1, 4) FROM loans"),), 2),
    Template("custom", ("Which members joined the library after {v}? Give their first and last names.",
                        "List the first and last names of members whose membership date is later than {v}."),
             "SELECT first_name, last_name FROM members WHERE membership_date > {v}",
             (("v", "SELECT DISTINCT substr(membership_date, 1, 4) || '-01-01' FROM members"),), 2),
    Template("custom", ("What is the title of the most expensive book and the name of its author?",
                        "Give the title and author name of the book with the highest price."),
             "SELECT T1.title, T2.name FROM books AS T1 JOIN authors AS T2 ON T1.author_id = T2.author_id "
             "ORDER BY T1.price DESC LIMIT 1", instances=1),
    Template("custom", ("Which authors born after {v} have written {x} books?", "List the names of authors born after {v} who wrote books in the {x} genre."),
             "SELECT DISTINCT T2.name FROM books AS T1 JOIN authors AS T2 ON T1.author_id = T2.author_id "
             "WHERE T2.birth_year > {v} AND T1.genre = {x}",
             (("v", (1940, 1950, 1960, 1970)), ("x", "SELECT DISTINCT genre FROM books")), 2),
    Template("custom", ("Which members from {v} have loans that are not returned? Give their first and last names.",),
             "SELECT DISTINCT T1.first_name, T1.last_name FROM members AS T1 JOIN loans AS T2 ON T1.member_id = T2.member_id "
             "WHERE T1.city = {v} AND T2.returned = 0", (("v", "SELECT DISTINCT city FROM members"),), 2),
)

BRIDGE = Bridge("loans", ("member_id", "members"), ("book_id", "books"), {
    "a_of_b": ("Which members have borrowed the book {v}? Give their first and last names.",
               "List the first and last names of members who borrowed {v}.",
               "Find the first and last names of the members who took out a loan for {v}."),
    "b_of_a": ("Which books has {v} borrowed? List the titles.", "What are the titles of the books borrowed by {v}?"),
    "count_b": ("How many times has the book {v} been borrowed?", "How many loans are there for {v}?"),
    "count_a": ("How many loans has {v} made?", "How many times has the member {v} borrowed a book?"),
    "count_a_of_b": ("How many different members have borrowed {v}?", "Count the distinct members who borrowed {v}."),
    "per_b": ("For each book that has been borrowed, show its title and the number of loans.",
              "List the title of every borrowed book and how many times it was borrowed."),
    "per_a": ("Show the first and last name of each member who borrowed books and the number of their loans.",),
    "top_b": ("Which book has been borrowed the most times? Give its title.", "What is the title of the most borrowed book?"),
    "top_a": ("Which member has borrowed the most books? Give the first and last name.",
              "Find the first and last name of the member with the most loans."),
    "a_never": ("Which members have never borrowed a book? List their first and last names.",
                "Find the first and last names of members with no loans."),
    "b_never": ("Which books have never been borrowed? Give their titles.", "List the titles of books that nobody has borrowed."),
    "a_both": ("Which members borrowed both {v} and {x}? Give their first and last names.",),
    "a_of_bcat": ("Which members have borrowed {v} books? Give their first and last names.",
                  "List the first and last names of members who borrowed a book in the {v} genre."),
    "b_of_acat": ("Which books have been borrowed by members from {v}? List the titles.",
                  "What are the titles of books borrowed by members who live in {v}?"),
})

DOMAIN = Domain(
    "library", TABLES, rows,
    entities=(
        Entity("authors", "author", ("name",), categories=("nationality",), measures=("birth_year",), pronoun="their"),
        Entity("books", "book", ("title",), categories=("genre",), measures=("price", "pages", "publication_year"),
               totals=("pages",), words=True),
        Entity("members", "member", MEMBER, "first and last name", categories=("city",), pronoun="their"),
        Entity("loans", "loan"),
    ),
    links=(Link("books", "author_id", "authors", "written by {}",
                ("Who wrote the book {v}?", "Which author wrote {v}?", "What is the name of the author of {v}?")),),
    bridges=(BRIDGE,),
    templates=TEMPLATES,
)
