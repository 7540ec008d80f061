"""Train domain: flights (airports, airlines, flights, passengers, bookings); two keys into airports."""

from __future__ import annotations

import random

from sqltrain.minibench import words as W
from sqltrain.minibench.model import Bridge, Col, Domain, Entity, Link, TableSpec, Template

AIRPORTS = (
    ("BOS", "Logan International Airport", "Boston", "USA"), ("ORD", "O'Hare International Airport", "Chicago", "USA"),
    ("DEN", "Denver International Airport", "Denver", "USA"), ("SEA", "Seattle-Tacoma International Airport", "Seattle", "USA"),
    ("JFK", "John F. Kennedy International Airport", "New York", "USA"), ("SFO", "San Francisco International Airport", "San Francisco", "USA"),
    ("YYZ", "Toronto Pearson Airport", "Toronto", "Canada"), ("YVR", "Vancouver International Airport", "Vancouver", "Canada"),
    ("LHR", "Heathrow Airport", "London", "UK"), ("MAN", "Manchester Airport", "Manchester", "UK"),
    ("CDG", "Charles de Gaulle Airport", "Paris", "France"), ("LYS", "Lyon Saint-Exupery Airport", "Lyon", "France"),
    ("FRA", "Frankfurt Airport", "Frankfurt", "Germany"), ("MUC", "Munich Airport", "Munich", "Germany"),
    ("MAD", "Adolfo Suarez Madrid-Barajas Airport", "Madrid", "Spain"), ("BCN", "Barcelona El Prat Airport", "Barcelona", "Spain"),
    ("FCO", "Leonardo da Vinci Airport", "Rome", "Italy"), ("AMS", "Amsterdam Schiphol Airport", "Amsterdam", "Netherlands"),
    ("HND", "Haneda Airport", "Tokyo", "Japan"), ("ICN", "Incheon International Airport", "Seoul", "South Korea"),
    ("SYD", "Sydney Kingsford Smith Airport", "Sydney", "Australia"), ("DUB", "Dublin Airport", "Dublin", "Ireland"),
    ("LIS", "Humberto Delgado Airport", "Lisbon", "Portugal"), ("VIE", "Vienna International Airport", "Vienna", "Austria"),
)
AIRLINE_WORDS = ("Blue Sky", "Northern", "Pacific", "Atlantic", "Silver Wing", "Sunrise", "Polar", "Coastal", "Summit",
                 "Horizon", "Meridian", "Aurora", "Falcon", "Crescent", "Evergreen")
AIRLINE_KINDS = ("Airways", "Air", "Airlines", "Jet")
SEATS = (("Economy", 12), ("Premium Economy", 3), ("Business", 2), ("First", 1))

TABLES = (
    TableSpec("airports", (Col("airport_code"), Col("airport_name", phrase="name"), Col("city"), Col("country"),
                           Col("elevation", "INTEGER")), "airport_code"),
    TableSpec("airlines", (Col("airline_id", "INTEGER"), Col("airline_name", phrase="name"), Col("country"),
                           Col("founded_year", "INTEGER"), Col("fleet_size", "INTEGER")), "airline_id"),
    TableSpec("flights", (Col("flight_id", "INTEGER"), Col("flight_number"), Col("airline_id", "INTEGER"),
                          Col("origin"), Col("destination"), Col("departure_date", "DATE"),
                          Col("duration_minutes", "INTEGER", "duration in minutes"), Col("distance_km", "INTEGER", "distance")),
              "flight_id", (("airline_id", "airlines", "airline_id"), ("origin", "airports", "airport_code"),
                            ("destination", "airports", "airport_code"))),
    TableSpec("passengers", (Col("passenger_id", "INTEGER"), Col("name"), Col("nationality"), Col("age", "INTEGER")),
              "passenger_id"),
    TableSpec("bookings", (Col("booking_id", "INTEGER"), Col("passenger_id", "INTEGER"), Col("flight_id", "INTEGER"),
                           Col("seat_class"), Col("price", "REAL")),
              "booking_id", (("passenger_id", "passengers", "passenger_id"), ("flight_id", "flights", "flight_id"))),
)


def rows(rng: random.Random) -> dict[str, list[tuple]]:
    airports = [(code, name, city, country, rng.randrange(0, 1700)) for code, name, city, country in AIRPORTS]
    names = W.unique(rng, 20, lambda r: f"{W.pick(r, AIRLINE_WORDS)} {W.pick(r, AIRLINE_KINDS)}")
    countries = sorted({a[3] for a in airports})
    airlines = [(i + 1, n, W.pick(rng, countries), rng.randint(1925, 2015), rng.randint(8, 300)) for i, n in enumerate(names)]
    flying = W.some(rng, [a[0] for a in airlines], 3)
    served = W.some(rng, [a[0] for a in airports], 3)  # a few airports without flights
    flights = []
    for i in range(150):
        origin, dest = rng.sample(served, 2)
        airline = W.pick(rng, flying)
        km = rng.randrange(300, 12000)
        number = f"{''.join(w[0] for w in names[airline - 1].split())}{100 + i * 7}"
        flights.append((i + 1, number, airline, origin, dest, W.day(rng, "2024-06-01", "2024-08-31"),
                        40 + km * 60 // 800 + rng.randrange(0, 30), km))
    nations = sorted(set(W.NATIONALITIES.values()))
    passengers = [(i + 1, n, W.pick(rng, nations), rng.randint(2, 88)) for i, n in enumerate(W.unique(rng, 100, W.full_name))]
    flyers = W.some(rng, [p[0] for p in passengers], 15)
    booked = W.some(rng, [f[0] for f in flights], 30)
    bookings = []
    for i in range(200):
        seat = W.weighted(rng, SEATS)
        factor = {"Economy": 1, "Premium Economy": 1.6, "Business": 3.5, "First": 6}[seat]
        bookings.append((i + 1, W.pick(rng, flyers), W.pick(rng, booked), seat, round(rng.uniform(60, 700) * factor, 2)))
    return {"airports": airports, "airlines": airlines, "flights": flights, "passengers": passengers, "bookings": bookings}


_ROUTE = ("flights AS T1 JOIN airports AS T2 ON T1.origin = T2.airport_code "
          "JOIN airports AS T3 ON T1.destination = T3.airport_code")
TEMPLATES = (
    Template("custom", ("Which flights go from {v[0]} to {v[1]}? Give the flight numbers.",
                        "List the flight numbers of flights departing from {v[0]} and arriving in {v[1]}."),
             f"SELECT T1.flight_number FROM {_ROUTE} WHERE T2.city = {{v[0]}} AND T3.city = {{v[1]}}",
             (("v", f"SELECT DISTINCT T2.city, T3.city FROM {_ROUTE}"),), 3),
    Template("custom", ("How many flights depart from airports in {v}?", "Count the flights leaving from {v}."),
             "SELECT count(*) FROM flights AS T1 JOIN airports AS T2 ON T1.origin = T2.airport_code WHERE T2.country = {v}",
             (("v", "SELECT DISTINCT country FROM airports"),), 2),
    Template("custom", ("Which airports have no departing or arriving flights? Give their names.",),
             "SELECT airport_name FROM airports WHERE airport_code NOT IN (SELECT origin FROM flights) "
             "AND airport_code NOT IN (SELECT destination FROM flights)", instances=1),
    Template("custom", ("List the origin and destination airport codes of flights longer than {v} kilometers.",
                        "What are the origin and destination codes of flights with a distance above {v} km?"),
             "SELECT origin, destination FROM flights WHERE distance_km > {v}", (("v", (8000, 9000, 10000, 11000)),), 2),
    Template("custom", ("What is the average price of {v} bookings?", "Find the mean price paid for {v} seats."),
             "SELECT avg(price) FROM bookings WHERE seat_class = {v}", (("v", "SELECT DISTINCT seat_class FROM bookings"),), 2),
    Template("custom", ("What is the flight number and airline name of the longest flight?",
                        "Give the flight number and the name of the airline of the flight with the greatest distance."),
             "SELECT T1.flight_number, T2.airline_name FROM flights AS T1 JOIN airlines AS T2 ON T1.airline_id = T2.airline_id "
             "ORDER BY T1.distance_km DESC LIMIT 1", instances=1),
    Template("custom", ("Which airlines fly to {v}? Give their names.", "List the names of airlines with flights arriving in {v}."),
             "SELECT DISTINCT T3.airline_name FROM flights AS T1 JOIN airports AS T2 ON T1.destination = T2.airport_code "
             "JOIN airlines AS T3 ON T1.airline_id = T3.airline_id WHERE T2.city = {v}",
             (("v", "SELECT DISTINCT city FROM airports"),), 2),
)

BRIDGE = Bridge("bookings", ("passenger_id", "passengers"), ("flight_id", "flights"), {
    "a_of_b": ("Which passengers booked flight {v}? Give their names.", "List the names of passengers with a booking on flight {v}."),
    "b_of_a": ("Which flights has {v} booked? Give the flight numbers.", "List the flight numbers booked by {v}."),
    "count_b": ("How many bookings does flight {v} have?", "How many seats have been booked on flight {v}?"),
    "count_a": ("How many bookings has {v} made?",),
    "per_b": ("For each booked flight, show the flight number and the number of bookings.",),
    "top_b": ("Which flight has the most bookings? Give its flight number.",),
    "top_a": ("Which passenger has made the most bookings? Give the name.",),
    "a_never": ("Which passengers have no bookings? List their names.", "Find the names of passengers who never booked a flight."),
    "b_never": ("Which flights have no bookings? Give their flight numbers.",),
    "b_of_acat": ("Which flights have been booked by {v} passengers? List the flight numbers.",),
})

DOMAIN = Domain(
    "flights", TABLES, rows,
    entities=(
        Entity("airports", "airport", ("airport_name",), "name", categories=("country",), measures=("elevation",)),
        Entity("airlines", "airline", ("airline_name",), "name", categories=("country",),
               measures=("founded_year", "fleet_size"), totals=("fleet_size",)),
        Entity("flights", "flight", ("flight_number",), measures=("distance_km", "duration_minutes")),
        Entity("passengers", "passenger", ("name",), categories=("nationality",), measures=("age",), pronoun="their"),
        Entity("bookings", "booking", categories=("seat_class",), measures=("price",), totals=("price",)),
    ),
    links=(
        Link("flights", "airline_id", "airlines", "operated by {}", ("Which airline operates flight {v}?",)),
        Link("flights", "origin", "airports", "departing from {}", ("Which airport does flight {v} depart from?",),
             noun="departing flight"),
        Link("flights", "destination", "airports", "arriving at {}", ("Which airport does flight {v} arrive at?",),
             noun="arriving flight"),
    ),
    bridges=(BRIDGE,),
    templates=TEMPLATES,
)
