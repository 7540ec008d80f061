"""Dev domain: real estate (agents, properties, buyers, sales)."""

from __future__ import annotations

import random

from sqltrain.minibench import words as W
from sqltrain.minibench.model import Bridge, Col, Domain, Entity, Link, TableSpec, Template

AGENCIES = ("Harbor Realty", "Keystone Homes", "Summit Properties", "Urban Nest", "Bluegate Estates")
TOWNS = ("Ashford", "Brookfield", "Clearwater", "Dunmore", "Elmwood", "Foxhill", "Glenview")
TYPES = (("House", 6), ("Apartment", 7), ("Townhouse", 3), ("Condo", 3), ("Cottage", 1))
BASE_PRICE = {"House": 420000, "Apartment": 260000, "Townhouse": 340000, "Condo": 280000, "Cottage": 300000}

TABLES = (
    TableSpec("agents", (Col("agent_id", "INTEGER"), Col("first_name"), Col("last_name"), Col("agency"),
                         Col("years_active", "INTEGER", "years active"), Col("commission_rate", "REAL")), "agent_id"),
    TableSpec("properties", (Col("property_id", "INTEGER"), Col("address"), Col("city"), Col("property_type"),
                             Col("bedrooms", "INTEGER", "number of bedrooms"), Col("area_sqm", "INTEGER", "area"),
                             Col("list_price", "INTEGER"), Col("agent_id", "INTEGER"), Col("listed_date", "DATE")),
              "property_id", (("agent_id", "agents", "agent_id"),)),
    TableSpec("buyers", (Col("buyer_id", "INTEGER"), Col("name"), Col("city"), Col("max_budget", "INTEGER", "budget")),
              "buyer_id"),
    TableSpec("sales", (Col("sale_id", "INTEGER"), Col("property_id", "INTEGER"), Col("buyer_id", "INTEGER"),
                        Col("sale_date", "DATE"), Col("sale_price", "INTEGER")),
              "sale_id", (("property_id", "properties", "property_id"), ("buyer_id", "buyers", "buyer_id"))),
)


def _address(rng: random.Random) -> str:
    return f"{rng.randint(1, 250)} {W.pick(rng, W.STREETS)} {W.pick(rng, W.STREET_KINDS)}"


def rows(rng: random.Random) -> dict[str, list[tuple]]:
    agents = [(i + 1, f, l, W.pick(rng, AGENCIES), rng.randint(1, 30), rng.choice((1.5, 2.0, 2.5, 3.0, 3.5)))
              for i, (f, l) in enumerate(W.unique(rng, 30, W.person))]
    listing = W.some(rng, [a[0] for a in agents], 4)
    properties = []
    for i, addr in enumerate(W.unique(rng, 150, _address)):
        kind = W.weighted(rng, TYPES)
        beds = rng.randint(1, 3) if kind in ("Apartment", "Condo") else rng.randint(2, 6)
        area = beds * rng.randint(22, 40) + rng.randint(15, 40)
        price = round(BASE_PRICE[kind] * (0.6 + area / 150) * rng.uniform(0.8, 1.3), -3)
        properties.append((i + 1, addr, W.pick(rng, TOWNS), kind, beds, area, int(price), W.pick(rng, listing),
                           W.day(rng, "2023-01-01", "2024-06-30")))
    buyers = [(i + 1, n, W.pick(rng, TOWNS), rng.randrange(25, 120) * 10000)
              for i, n in enumerate(W.unique(rng, 80, W.full_name))]
    purchasing = W.some(rng, [b[0] for b in buyers], 20)
    sold = rng.sample([p[0] for p in properties], 70)
    sales = []
    for i, pid in enumerate(sold):
        prop = properties[pid - 1]
        sales.append((i + 1, pid, W.pick(rng, purchasing), W.plus_days(prop[8], rng.randint(10, 200)),
                      int(round(prop[6] * rng.uniform(0.9, 1.08), -3))))
    return {"agents": agents, "properties": properties, "buyers": buyers, "sales": sales}


_SOLD = "properties AS T1 JOIN sales AS T2 ON T1.property_id = T2.property_id"
TEMPLATES = (
    Template("custom", ("Which properties sold for more than their list price? Give their addresses.",
                        "List the addresses of properties whose sale price was above the list price."),
             f"SELECT T1.address FROM {_SOLD} WHERE T2.sale_price > T1.list_price", instances=1),
    Template("custom", ("What is the average sale price of {v} properties?", "Find the mean sale price of sold properties of type {v}."),
             f"SELECT avg(T2.sale_price) FROM {_SOLD} WHERE T1.property_type = {{v}}",
             (("v", "SELECT DISTINCT property_type FROM properties"),), 2),
    Template("custom", ("How many properties in {v} have not been sold?", "Count the unsold properties in {v}."),
             "SELECT count(*) FROM properties WHERE city = {v} AND property_id NOT IN (SELECT property_id FROM sales)",
             (("v", "SELECT DISTINCT city FROM properties"),), 2),
    Template("custom", ("Which agent sold the most properties? Give the first and last name.",
                        "Find the first and last name of the agent with the most sales."),
             "SELECT T1.first_name, T1.last_name FROM agents AS T1 JOIN properties AS T2 ON T1.agent_id = T2.agent_id "
             "JOIN sales AS T3 ON T2.property_id = T3.property_id GROUP BY T1.agent_id ORDER BY count(*) DESC LIMIT 1",
             instances=1),
    Template("custom", ("List the addresses of properties with at least {v} bedrooms priced under {x}.",),
             "SELECT address FROM properties WHERE bedrooms >= {v} AND list_price < {x}",
             (("v", (2, 3, 4)), ("x", (300000, 400000, 500000))), 2),
    Template("custom", ("How many properties were sold in {v}?",),
             "SELECT count(*) FROM sales WHERE sale_date LIKE {v:prefix}", (("v", ("2023", "2024")),), 2),
    Template("custom", ("What are the addresses and sale prices of properties bought by buyers from {v}?",),
             "SELECT T1.address, T2.sale_price FROM properties AS T1 JOIN sales AS T2 ON T1.property_id = T2.property_id "
             "JOIN buyers AS T3 ON T2.buyer_id = T3.buyer_id WHERE T3.city = {v}",
             (("v", "SELECT DISTINCT city FROM buyers"),), 2),
)

BRIDGE = Bridge("sales", ("buyer_id", "buyers"), ("property_id", "properties"), {
    "a_of_b": ("Who bought the property at {v}?", "What is the name of the buyer of {v}?"),
    "b_of_a": ("Which properties did {v} buy? Give the addresses.", "List the addresses of properties bought by {v}."),
    "count_a": ("How many properties has {v} bought?",),
    "per_a": ("For each buyer, show the name and the number of properties bought.",),
    "top_a": ("Which buyer bought the most properties?",),
    "a_never": ("Which buyers have not bought any property? Give their names.", "List the names of buyers with no purchases."),
    "b_never": ("Which properties have not been sold? Give their addresses.", "List the addresses of unsold properties."),
    "a_of_bcat": ("Which buyers bought a property in {v}? Give their names.",),
    "b_of_acat": ("Which properties were bought by buyers from {v}? List the addresses.",),
})

DOMAIN = Domain(
    "real_estate", TABLES, rows,
    entities=(
        Entity("agents", "agent", ("first_name", "last_name"), "first and last name", categories=("agency",),
               measures=("years_active", "commission_rate"), pronoun="their"),
        Entity("properties", "property", ("address",), categories=("city", "property_type"),
               measures=("list_price", "area_sqm", "bedrooms"), words=True),
        Entity("buyers", "buyer", ("name",), categories=("city",), measures=("max_budget",), pronoun="their"),
        Entity("sales", "sale", measures=("sale_price",), totals=("sale_price",)),
    ),
    links=(Link("properties", "agent_id", "agents", "listed by {}", ("Which agent listed the property at {v}?",
                                                                     "Who is the agent of the property at {v}?")),),
    bridges=(BRIDGE,),
    templates=TEMPLATES,
)
