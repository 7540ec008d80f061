"""Small inline word lists and helpers for realistic rows (no external data, no Faker)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")

FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Lucas", "Sophia", "Mason", "Isabella", "Ethan",
    "Mia", "Logan", "Amelia", "James", "Harper", "Benjamin", "Evelyn", "Elijah", "Abigail", "Henry",
    "Emily", "Samuel", "Ella", "David", "Grace", "Daniel", "Chloe", "Matthew", "Lily", "Joseph",
    "Hannah", "Owen", "Zoe", "Gabriel", "Nora", "Julian", "Layla", "Isaac", "Aria", "Leo",
    "Maya", "Adrian", "Clara", "Victor", "Elena", "Oscar", "Sara", "Hugo", "Ines", "Marco",
    "Priya", "Ravi", "Aisha", "Omar", "Yuki", "Kenji", "Mei", "Chen", "Fatima", "Diego",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White",
    "Harris", "Clark", "Lewis", "Walker", "Hall", "Allen", "Young", "King", "Wright", "Scott",
    "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell", "Mitchell", "Roberts", "Carter", "Phillips",
    "Evans", "Turner", "Parker", "Collins", "Edwards", "Stewart", "Morris", "Murphy", "Cook", "Rogers",
    "Novak", "Rossi", "Schmidt", "Dubois", "Tanaka", "Kim", "Patel", "Silva", "Larsen", "Kowalski",
)
# (city, country)
CITIES = (
    ("Boston", "USA"), ("Chicago", "USA"), ("Denver", "USA"), ("Seattle", "USA"), ("Austin", "USA"),
    ("Toronto", "Canada"), ("Vancouver", "Canada"), ("London", "UK"), ("Manchester", "UK"),
    ("Edinburgh", "UK"), ("Paris", "France"), ("Lyon", "France"), ("Berlin", "Germany"),
    ("Munich", "Germany"), ("Madrid", "Spain"), ("Barcelona", "Spain"), ("Rome", "Italy"),
    ("Milan", "Italy"), ("Amsterdam", "Netherlands"), ("Stockholm", "Sweden"), ("Oslo", "Norway"),
    ("Tokyo", "Japan"), ("Osaka", "Japan"), ("Seoul", "South Korea"), ("Sydney", "Australia"),
    ("Melbourne", "Australia"), ("Dublin", "Ireland"), ("Lisbon", "Portugal"), ("Vienna", "Austria"),
    ("Prague", "Czech Republic"),
)
NATIONALITIES = {
    "USA": "American", "Canada": "Canadian", "UK": "British", "France": "French", "Germany": "German",
    "Spain": "Spanish", "Italy": "Italian", "Netherlands": "Dutch", "Sweden": "Swedish", "Norway": "Norwegian",
    "Japan": "Japanese", "South Korea": "Korean", "Australia": "Australian", "Ireland": "Irish",
    "Portugal": "Portuguese", "Austria": "Austrian", "Czech Republic": "Czech", "Brazil": "Brazilian",
}
ADJECTIVES = (
    "Silent", "Golden", "Hidden", "Broken", "Crimson", "Distant", "Frozen", "Lost", "Midnight", "Quiet",
    "Burning", "Secret", "Wild", "Gentle", "Bitter", "Silver", "Endless", "Fallen", "Hollow", "Scarlet",
)
NOUNS = (
    "River", "Garden", "Harbor", "Forest", "Mountain", "Window", "Kingdom", "Shadow", "Island", "Letter",
    "Orchard", "Mirror", "Lantern", "Voyage", "Summer", "Winter", "Bridge", "Station", "Valley", "Promise",
)
STREETS = (
    "Maple", "Oak", "Pine", "Cedar", "Elm", "Willow", "Birch", "Chestnut", "Walnut", "Spruce",
    "Lake", "Hill", "Park", "River", "Sunset", "Meadow", "Highland", "Church", "Mill", "Station",
)
STREET_KINDS = ("Street", "Avenue", "Road", "Lane", "Drive")


def pick(rng: random.Random, seq: Sequence[T]) -> T:
    return seq[rng.randrange(len(seq))]


def unique(rng: random.Random, n: int, make: Callable[[random.Random], T]) -> list[T]:
    """n distinct values of make(rng), in the order first made (deterministic for a seeded rng)."""
    seen: dict[T, None] = {}
    for _ in range(n * 50):
        seen.setdefault(make(rng), None)
        if len(seen) == n:
            return list(seen)
    raise ValueError(f"could not make {n} distinct values")


def person(rng: random.Random) -> tuple[str, str]:
    return pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES)


def full_name(rng: random.Random) -> str:
    return " ".join(person(rng))


def day(rng: random.Random, start: str, end: str) -> str:
    """A random ISO date between start and end (inclusive)."""
    a, b = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return (a + dt.timedelta(days=rng.randrange((b - a).days + 1))).isoformat()


def plus_days(date: str, days: int) -> str:
    return (dt.date.fromisoformat(date) + dt.timedelta(days=days)).isoformat()


def money(rng: random.Random, lo: float, hi: float, step: float = 0.01) -> float:
    """A price between lo and hi on a grid of `step`, rounded so its repr is short."""
    return round(round(rng.uniform(lo, hi) / step) * step, 2)


def weighted(rng: random.Random, items: Sequence[tuple[T, int]]) -> T:
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


def some(rng: random.Random, ids: Sequence[int], skip: int) -> list[int]:
    """ids minus `skip` of them, so some parents keep no children (for 'which ... have no ...')."""
    out = list(ids)
    for _ in range(skip):
        out.pop(rng.randrange(len(out)))
    return out
