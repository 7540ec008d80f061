"""The validation split: whole train databases held out of training, chosen by a seeded hash.

Spider's dev shares no database with train; a validation split for tuning and ablations
should not either, or it would reward memorising a database's values and names. So the carve
is by database: train_spider's databases are ranked by sha256("<seed>:<db_id>") and the first
fraction x count rounded half up (at least one) are held out. The hash, unlike Python's `hash`, is the
same in every process and on every machine, and a database's rank does not depend on which
other databases exist. Only train_spider's databases are candidates: train_others' six
(geo, scholar, ...) are large non-Spider-style sets of hundreds of questions each, which
Spider's dev does not resemble either, so they always stay in training.

This module decides only *which databases*; SpiderBenchmark.examples applies it, so prepare,
generate and evaluate all get the same examples from one place.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

VALIDATION = "validation"
"""The derived split's name; its examples are train examples (index = position in train)."""


@dataclass(frozen=True)
class ValidationCarve:
    fraction: float = 0.0
    """Fraction of the candidate databases held out; 0 = no validation split."""
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.fraction <= 0.5:
            raise ValueError(f"validation fraction must be in [0, 0.5], got {self.fraction}")

    @property
    def enabled(self) -> bool:
        return self.fraction > 0


def db_rank_key(db_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{db_id}".encode()).hexdigest()


def validation_databases(candidates: set[str] | list[str], carve: ValidationCarve) -> list[str]:
    """The held-out databases among `candidates`, sorted by name (empty when disabled).

    Raises ValueError when holding out would leave no candidate database for training.
    """
    if not carve.enabled:
        return []
    ranked = sorted(set(candidates), key=lambda db: db_rank_key(db, carve.seed))
    k = max(1, math.floor(carve.fraction * len(ranked) + 0.5))  # half up, not Python's half-even round
    if k >= len(ranked):
        raise ValueError(f"data.validation.fraction={carve.fraction} holds out {k} of {len(ranked)} train "
                         "databases, leaving none to train on; lower it")
    return sorted(ranked[:k])
