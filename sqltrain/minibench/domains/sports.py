"""Dev domain: a football league (teams, players, coaches, matches); matches key into teams twice."""

from __future__ import annotations

import random

from sqltrain.minibench import words as W
from sqltrain.minibench.model import Col, Domain, Entity, Link, TableSpec, Template

MASCOTS = ("Lions", "Eagles", "Wolves", "Falcons", "Bears", "Sharks", "Rangers", "Rovers", "United", "Tigers", "Comets")
POSITIONS = (("Goalkeeper", 2), ("Defender", 6), ("Midfielder", 6), ("Forward", 4))
GOALS = {"Goalkeeper": 0, "Defender": 3, "Midfielder": 7, "Forward": 16}
ROLES = (("Head Coach", 1), ("Assistant Coach", 1))

TABLES = (
    TableSpec("teams", (Col("team_id", "INTEGER"), Col("team_name", phrase="name"), Col("city"),
                        Col("founded_year", "INTEGER"), Col("stadium_capacity", "INTEGER")), "team_id"),
    TableSpec("players", (Col("player_id", "INTEGER"), Col("name"), Col("team_id", "INTEGER"), Col("position"),
                          Col("age", "INTEGER"), Col("goals", "INTEGER", "number of goals"), Col("nationality")),
              "player_id", (("team_id", "teams", "team_id"),)),
    TableSpec("coaches", (Col("coach_id", "INTEGER"), Col("name"), Col("team_id", "INTEGER"), Col("role"),
                          Col("age", "INTEGER")), "coach_id", (("team_id", "teams", "team_id"),)),
    TableSpec("matches", (Col("match_id", "INTEGER"), Col("home_team_id", "INTEGER"), Col("away_team_id", "INTEGER"),
                          Col("match_date", "DATE"), Col("home_goals", "INTEGER"), Col("away_goals", "INTEGER"),
                          Col("attendance", "INTEGER")),
              "match_id", (("home_team_id", "teams", "team_id"), ("away_team_id", "teams", "team_id"))),
)


def rows(rng: random.Random) -> dict[str, list[tuple]]:
    cities = [c for c, _ in W.CITIES]
    names = W.unique(rng, 20, lambda r: f"{W.pick(r, cities)} {W.pick(r, MASCOTS)}")
    teams = [(i + 1, n, n.rsplit(" ", 1)[0], rng.randint(1880, 2010), rng.randrange(80, 700) * 100)
             for i, n in enumerate(names)]
    nations = sorted(set(W.NATIONALITIES.values()))[:10]
    players = []
    for i, name in enumerate(W.unique(rng, 180, W.full_name)):
        pos = W.weighted(rng, POSITIONS)
        players.append((i + 1, name, i % 20 + 1, pos, rng.randint(17, 38), rng.randint(0, GOALS[pos]) if GOALS[pos] else 0,
                        W.pick(rng, nations)))
    coached = W.some(rng, [t[0] for t in teams], 2)
    coaches = [(i + 1, n, coached[i % len(coached)], "Head Coach" if i < len(coached) else "Assistant Coach",
                rng.randint(35, 70)) for i, n in enumerate(W.unique(rng, 30, W.full_name))]
    matches = []
    for i in range(150):
        home, away = rng.sample(range(1, 21), 2)
        capacity = teams[home - 1][4]
        matches.append((i + 1, home, away, W.day(rng, "2024-08-01", "2025-05-31"), rng.choice((0, 0, 1, 1, 1, 2, 2, 3, 4)),
                        rng.choice((0, 0, 1, 1, 1, 2, 2, 3)), rng.randrange(capacity // 2, capacity)))
    return {"teams": teams, "players": players, "coaches": coaches, "matches": matches}


_HOME = "matches AS T1 JOIN teams AS T2 ON T1.home_team_id = T2.team_id"
TEMPLATES = (
    Template("custom", ("How many matches ended in a draw?", "Count the matches where both teams scored the same number of goals."),
             "SELECT count(*) FROM matches WHERE home_goals = away_goals", instances=1),
    Template("custom", ("On which dates did {v} win at home?", "List the dates of home wins of {v}."),
             f"SELECT T1.match_date FROM {_HOME} WHERE T2.team_name = {{v}} AND T1.home_goals > T1.away_goals",
             (("v", "SELECT DISTINCT team_name FROM teams"),), 3),
    Template("custom", ("Which team scored the most goals in home matches?", "Find the name of the team with the most home goals."),
             f"SELECT T2.team_name FROM {_HOME} GROUP BY T1.home_team_id ORDER BY sum(T1.home_goals) DESC LIMIT 1",
             instances=1),
    Template("custom", ("Who is the top scorer of {v}?", "What is the name of the player with the most goals in {v}?"),
             "SELECT T1.name FROM players AS T1 JOIN teams AS T2 ON T1.team_id = T2.team_id WHERE T2.team_name = {v} "
             "ORDER BY T1.goals DESC LIMIT 1", (("v", "SELECT DISTINCT team_name FROM teams"),), 3),
    Template("custom", ("Who is the head coach of {v}?", "Give the name of the head coach of {v}."),
             "SELECT T1.name FROM coaches AS T1 JOIN teams AS T2 ON T1.team_id = T2.team_id "
             "WHERE T2.team_name = {v} AND T1.role = 'Head Coach'", (("v", "SELECT DISTINCT team_name FROM teams"),), 2),
    Template("custom", ("What is the total number of goals scored in matches played in {v[1]}?",),
             "SELECT sum(home_goals + away_goals) FROM matches WHERE match_date LIKE {v[0]:prefix}",
             (("v", (("2024-09", "September 2024"), ("2024-12", "December 2024"), ("2025-03", "March 2025"))),), 2),
    Template("custom", ("Which teams have no coaches? Give their names.",),
             "SELECT team_name FROM teams WHERE team_id NOT IN (SELECT team_id FROM coaches)", instances=1),
    Template("custom", ("List the names and ages of {v}s older than {x}.",),
             "SELECT name, age FROM players WHERE position = {v} AND age > {x}",
             (("v", "SELECT DISTINCT position FROM players"), ("x", (28, 30, 32))), 2),
)

DOMAIN = Domain(
    "sports_league", TABLES, rows,
    entities=(
        Entity("teams", "team", ("team_name",), "name", categories=("city",), measures=("founded_year", "stadium_capacity")),
        Entity("players", "player", ("name",), categories=("position", "nationality"), measures=("age", "goals"),
               totals=("goals",), pronoun="their"),
        Entity("coaches", "coach", ("name",), categories=("role",), measures=("age",), pronoun="their"),
        Entity("matches", "match", measures=("attendance", "home_goals", "away_goals"), totals=("attendance",)),
    ),
    links=(
        Link("players", "team_id", "teams", "playing for {}", ("Which team does {v} play for?",)),
        Link("coaches", "team_id", "teams", "coaching {}", ("Which team does {v} coach?",)),
        Link("matches", "home_team_id", "teams", "hosted by {}", noun="home match"),
        Link("matches", "away_team_id", "teams", "played away by {}", noun="away match"),
    ),
    templates=TEMPLATES,
)
