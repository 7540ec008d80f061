"""The stage registry: each stage declares, here and only here, what its output depends on.

A stage reads the outputs of its `inputs` and the config `sections` it names, and writes its
`outputs` under run_dir. Its output is therefore stale when a section it depends on changes
(its own or any input's, transitively: `depends_on`), or when a `version` in that chain is
bumped on purpose. Everything else that decides "is this output still valid?" is derived here:

- the pipeline's markers ``{run_dir}/stages/<stage>.json`` hold `stage_key` (sqltrain.pipeline);
- prepare's fingerprint hashes prepare's sections and the source of its `code` packages
  (sqltrain.prep.pipeline.fingerprint; preparing is cheap and deterministic, so any edit of
  that code re-prepares, while the markers of the costly stages follow deliberate `version`
  bumps rather than every edit);
- train's resume guard (`RESUME_SECTIONS` + the shards' fingerprint, sqltrain.train.driver);
- tune's tunable sections: train's own sections that no input of train depends on (trials
  share the base run's prepared shards);
- the versions of the two caches (value indexes, the mini benchmark) in `CACHES`.

Adding a config field needs nothing here (a section is hashed whole); adding a section or a
stage is one declaration below (tests/test_stages.py checks every section is accounted for).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqltrain.config import Config

PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class StageSpec:
    name: str
    inputs: tuple[str, ...]
    """Stages whose outputs this one reads."""
    sections: tuple[str, ...]
    """Config sections this stage's own work reads (its inputs' sections come along)."""
    outputs: tuple[str, ...]
    """Files it writes, relative to run_dir; the stage is done when all exist."""
    version: int = 1
    """Bump when the output changes meaning for the same config: re-runs it and what follows."""
    code: tuple[str, ...] = ()
    """Parts of the sqltrain package (packages or files) whose source is part of the output's
    fingerprint, checked by the stage itself."""
    pipeline: bool = True
    """Run by `sqltrain pipeline` (tune is a command of its own)."""


PREPARE_SECTIONS = ("data", "linking", "prompt", "model")
TRAIN_SECTIONS = ("model", "prompt", "lora", "quantization", "deepspeed", "train")
"""Training reads the model and the prompt template itself (it saves both beside the adapter)."""

STAGES = (
    StageSpec("prepare", (), PREPARE_SECTIONS, ("data/manifest.json",), code=("prep", "linking", "spider")),
    StageSpec("train", ("prepare",), TRAIN_SECTIONS, ("train/adapter/adapter_config.json",)),
    # The base model links, renders and decodes as prepare and training would (quantization:
    # the hf engine runs the base in NF4 when training would), without reading their outputs.
    StageSpec("generate-base", (), PREPARE_SECTIONS + ("quantization", "generate"), ("predictions/base.jsonl",)),
    StageSpec("generate-finetuned", ("train",), ("data", "generate"), ("predictions/finetuned.jsonl",)),
    StageSpec("evaluate-base", ("generate-base",), ("data", "evaluate"), ("eval/base/summary.json",)),
    StageSpec("evaluate-finetuned", ("generate-finetuned",), ("data", "evaluate"), ("eval/finetuned/summary.json",)),
    StageSpec("compare", ("evaluate-base", "evaluate-finetuned"), (), ("compare/compare.json",)),
    StageSpec("report", ("train", "evaluate-base", "evaluate-finetuned"), (), ("report/report.md",)),
    # tune.metric=ex also generates and evaluates each trial's adapter (data: tune.eval_split's benchmark).
    StageSpec("tune", ("prepare",), TRAIN_SECTIONS + ("data", "generate", "evaluate", "tune"),
              ("tune/results.json",), pipeline=False),
)
BY_NAME = {s.name: s for s in STAGES}
PIPELINE = tuple(s.name for s in STAGES if s.pipeline)
"""The pipeline's stages in the order they run (--stages picks from these names)."""
PLACEMENT_FIELDS = ("run_dir", "cluster", "tracking")
"""Config fields that say where work runs, lands and is logged, not what it computes: no stage
depends on them."""


@dataclass(frozen=True)
class CacheSpec:
    version: int
    """Bump when the cached content changes meaning (names the cache entry)."""
    code: tuple[str, ...] = ()
    """Source whose change rebuilds the cache."""


CACHES = {
    "value-index": CacheSpec(version=1),
    "mini-benchmark": CacheSpec(version=1, code=("minibench", "spider/hardness.py", "spider/sqlparts.py")),
}


def spec(name: str) -> StageSpec:
    return BY_NAME[name]


def upstream(name: str) -> tuple[str, ...]:
    """Every stage `name` reads from, directly or through its inputs, in registry order."""
    seen: set[str] = set()
    todo = list(spec(name).inputs)
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo.extend(spec(s).inputs)
    return tuple(s.name for s in STAGES if s.name in seen)


def depends_on(name: str) -> tuple[str, ...]:
    """Config sections the output of `name` depends on: its own and its inputs', transitively."""
    sections = [sec for s in (*upstream(name), name) for sec in spec(s).sections]
    return tuple(dict.fromkeys(sections))


def versions(name: str) -> dict[str, int]:
    return {s: spec(s).version for s in (*upstream(name), name)}


def stage_key(cfg: Config, name: str) -> str:
    """What the pipeline's marker of `name` records: a hash of the sections it depends on, and
    of the versions of it and its upstream stages once any was bumped (so markers written
    before versions existed stay valid)."""
    key = cfg.content_hash(*depends_on(name))
    bumped = {s: v for s, v in versions(name).items() if v != 1}
    if not bumped:
        return key
    return hashlib.sha256(json.dumps([key, bumped], sort_keys=True).encode()).hexdigest()[:16]


def tunable_sections() -> tuple[str, ...]:
    """Sections a Tune trial may vary: train's own, minus those its inputs depend on (every
    trial trains on the base run's prepared shards)."""
    shared = {sec for s in upstream("train") for sec in spec(s).sections}
    return tuple(s for s in spec("train").sections if s not in shared)


def code_files(parts: tuple[str, ...]) -> list[Path]:
    """Source files of the named parts of the sqltrain package (a package: its modules)."""
    files = []
    for part in parts:
        path = PACKAGE / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


@lru_cache(maxsize=None)
def code_digest(parts: tuple[str, ...]) -> str:
    """sha256 over the named source files (path relative to the package, then bytes)."""
    h = hashlib.sha256()
    for f in code_files(parts):
        h.update(f.relative_to(PACKAGE).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()
