"""`sqltrain prepare`: Spider split(s) -> link -> render -> tokenize -> Parquet shards, on Ray Data.

Output, written whole or not at all (a temp dir renamed into place), under ``{run_dir}/data``:
- ``<split>/*.parquet``: ``input_ids`` and ``labels`` (list<int32>, labels -100 on the prompt),
  ``length`` (int32), ``id``, ``db_id``, ``hardness``; ``data.num_shards`` files, rows in
  benchmark order;
- ``<split>.alpaca.jsonl``: ``{instruction, input, output, explanation}`` per kept example;
- ``manifest.json``: per split the example count, drops by reason, shards, token length
  stats and linking stats (table/column recall of the gold SQL, schema tokens kept); with
  data.validation, the held-out databases (``validation``) and a ``validation`` split whose
  databases the ``train`` shards do not contain.

Both splits go through one Ray Data ``map_batches`` over an actor pool, so the tokenizer and
the per-database linkers load once per actor. Value indexes are built (or found in the
cache) by the driver first. Re-running with the same config and inputs reuses the output
(the manifest's fingerprint matches); a changed input reproduces identical shards.

Every input is checked in the driver before Ray starts (tables.json, the split files, the
exclusion list, each used database file, the tokenizer, the prompt template and its length);
``{run_dir}/data`` is replaced only when it is a sqltrain output (sqltrain.io.check_replaceable),
and a split that keeps no example is an error, not an empty success.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from sqltrain import __version__
from sqltrain.config import Config, ConfigError, config_from_dict
from sqltrain.io import atomic_dir, atomic_write_json, atomic_write_jsonl, check_replaceable, file_sha256
from sqltrain.linking.value_index import ensure_value_index
from sqltrain.prep.records import alpaca_record
from sqltrain.spider.benchmark import Example, SpiderBenchmark, SpiderFormatError
from sqltrain.spider.validation import VALIDATION
from sqltrain.stages import code_digest, spec

BATCH_SIZE = 128
SHARD_SCHEMA = pa.schema([
    ("input_ids", pa.list_(pa.int32())),
    ("labels", pa.list_(pa.int32())),
    ("length", pa.int32()),
    ("id", pa.string()),
    ("db_id", pa.string()),
    ("hardness", pa.string()),
])
STAT_FIELDS = ("pruned", "pruned_for_length", "schema_tokens", "full_schema_tokens",
               "gold_tables", "kept_tables", "gold_columns", "kept_columns")
ALPACA_FIELDS = ("schema_text", "question", "sql", "explanation")


@dataclass(frozen=True)
class PrepareResult:
    data_dir: Path
    """{run_dir}/data: shards per split, Alpaca JSONL and the manifest."""
    manifest: Path
    fingerprint: str
    """What the output is tied to (config sections, input files, code): see fingerprint()."""
    reused: bool
    """True when an up-to-date output was found and left untouched."""


def log(msg: str) -> None:
    print(f"[sqltrain prepare] {msg}", flush=True)


def splits_of(cfg: Config) -> list[str]:
    """The splits prepare writes: train, eval, and the validation split when data.validation has one."""
    held_out = [VALIDATION] if cfg.data.validation.fraction > 0 else []
    return list(dict.fromkeys([cfg.data.train_split, cfg.data.eval_split, *held_out]))


def validation_record(bench: SpiderBenchmark, examples: dict[str, list[Example]]) -> dict | None:
    """The manifest's account of the validation carve: which databases, and what each side holds."""
    if not bench.validation.enabled:
        return None
    train_dbs = {e.db_id for e in examples.get("train", [])}
    return {"fraction": bench.validation.fraction, "seed": bench.validation.seed,
            "databases": bench.validation_dbs, "num_databases": len(bench.validation_dbs),
            "examples": len(examples.get(VALIDATION, [])), "train_databases": len(train_dbs)}


def load_examples(bench: SpiderBenchmark, cfg: Config, split: str) -> list[Example]:
    """The split's examples outside data.exclude, on databases that are readable SQLite files.

    Databases are checked after the exclusions (Spider's missing formula_1 is excluded by
    KNOWN_GAPS); a bad one is an error, or with data.on_error=skip its examples are counted
    as skipped.
    """
    examples = bench.examples(split, exclude=cfg.data.exclude, check_db=False)
    bad = {db: p for db in sorted({e.db_id for e in examples}) if (p := bench.db_problem(bench.db_path(db)))}
    for db, problem in bad.items():
        n = sum(e.db_id == db for e in examples)
        if cfg.data.on_error == "raise":
            raise SpiderFormatError(f"database file {bench.db_path(db)} {problem}: {n} {split} examples use it; "
                                    "list them in data.exclude or set data.on_error=skip")
        bench.skipped["missing database file" if problem == "is missing" else "bad database file"] += n
    examples = [e for e in examples if e.db_id not in bad]
    if not examples:
        raise SpiderFormatError(f"{bench.root}: no {split} examples left after exclusions and skipped databases")
    return examples[: cfg.data.limit] if cfg.data.limit is not None else examples


def fingerprint(cfg: Config, bench: SpiderBenchmark) -> str:
    """Hash of what the output depends on: its config sections, input files and code (as the
    stage registry declares them)."""
    stage = spec("prepare")
    h = hashlib.sha256(json.dumps([__version__, cfg.content_hash(*stage.sections), stage.version]).encode())
    inputs = [bench.root / "tables.json", *(f for s in splits_of(cfg) for f in bench.split_files(s)), *bench.sqlite_files]
    if cfg.data.exclude:
        inputs.append(Path(cfg.data.exclude))
    for path in inputs:
        h.update(f"{path.relative_to(bench.root) if path.is_relative_to(bench.root) else path}:{file_sha256(path)}".encode())
    h.update(code_digest(stage.code).encode())
    return h.hexdigest()[:20]


def build_value_indexes(bench: SpiderBenchmark, cfg: Config, db_ids: set[str]) -> float:
    """Build (or find cached) the value index of every database used; returns seconds."""
    start, lk = time.time(), cfg.linking
    for db_id in sorted(db_ids):
        db_path = bench.db_path(db_id)
        if db_path.exists():  # a database without its file links without values
            ensure_value_index(db_path, bench.schemas[db_id], lk.max_values_per_column, lk.sample_values, lk.cache_dir)
    return time.time() - start


class PrepareBatch:
    """Ray Data actor: examples (pyarrow batch) -> records, one row per example."""

    def __init__(self, cfg_dict: dict, root: str):
        from sqltrain.model.loading import load_tokenizer
        from sqltrain.prep.records import RecordBuilder

        cfg = config_from_dict(cfg_dict)
        self.builder = RecordBuilder(cfg, SpiderBenchmark(root, on_error=cfg.data.on_error), load_tokenizer(cfg.model))

    def __call__(self, batch: pa.Table) -> pa.Table:
        records = [self.builder.record(Example(**row)) for row in batch.to_pylist()]
        columns = {
            "split": batch["split"],
            "input_ids": pa.array([r.input_ids for r in records], pa.list_(pa.int32())),
            "labels": pa.array([r.labels for r in records], pa.list_(pa.int32())),
            "length": pa.array([len(r.input_ids) for r in records], pa.int32()),
            "id": pa.array([r.id for r in records], pa.string()),
            "db_id": pa.array([r.db_id for r in records], pa.string()),
            "hardness": pa.array([r.hardness for r in records], pa.string()),
            "dropped": pa.array([r.dropped for r in records], pa.string()),
        }
        for name in STAT_FIELDS:
            columns[name] = pa.array([getattr(r, name) for r in records], pa.bool_() if "pruned" in name else pa.int32())
        for name in ALPACA_FIELDS:
            columns[name] = pa.array([getattr(r, name) for r in records], pa.string())
        return pa.table(columns)


def prepare_dataset(cfg: Config, bench: SpiderBenchmark, examples: dict[str, list[Example]]):
    """The records of every split as one materialized Ray Dataset (benchmark order kept)."""
    import ray

    rows = [
        {"split": e.split, "index": e.index, "db_id": e.db_id, "question": e.question, "query": e.query}
        for split_examples in examples.values()
        for e in split_examples
    ]
    blocks = max(1, -(-len(rows) // BATCH_SIZE))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ds.context.execution_options.preserve_order = True  # shards reproduce row for row
    workers = max(1, min(int(ray.cluster_resources().get("CPU", 1)), blocks))
    return ds.map_batches(
        PrepareBatch,
        fn_constructor_kwargs={"cfg_dict": cfg.to_dict(), "root": str(bench.root)},
        batch_size=BATCH_SIZE,
        batch_format="pyarrow",
        concurrency=workers,
        num_cpus=1,
    ).materialize()


def _quantiles(lengths: list[int]) -> dict:
    import numpy as np

    if not lengths:
        return {"mean": 0, "p50": 0, "p95": 0, "max": 0}
    a = np.asarray(lengths)
    return {"mean": round(float(a.mean()), 1), "p50": float(np.percentile(a, 50)),
            "p95": float(np.percentile(a, 95)), "max": int(a.max())}


def split_stats(meta: pa.Table) -> dict:
    """Counts, drops, token lengths and linking stats of one split's records."""
    kept = meta.filter(pc.is_null(meta["dropped"]))
    dropped = meta.filter(pc.is_valid(meta["dropped"]))["dropped"].to_pylist()
    col = {name: kept[name].to_pylist() for name in STAT_FIELDS}
    ratios = [k / f for k, f in zip(col["schema_tokens"], col["full_schema_tokens"]) if f]
    pruned = [r for r, p in zip(ratios, col["pruned"]) if p]
    linking = {
        "table_recall": round(sum(col["kept_tables"]) / max(1, sum(col["gold_tables"])), 4),
        "column_recall": round(sum(col["kept_columns"]) / max(1, sum(col["gold_columns"])), 4),
        "schema_tokens_kept": round(sum(ratios) / max(1, len(ratios)), 4),
        "schema_tokens_kept_when_pruned": round(sum(pruned) / max(1, len(pruned)), 4),
        "pruned": sum(col["pruned"]),
        "pruned_for_length": sum(col["pruned_for_length"]),
        "schema_tokens_mean": round(sum(col["schema_tokens"]) / max(1, kept.num_rows), 1),
    }
    return {
        "examples": kept.num_rows,
        "dropped": {reason: dropped.count(reason) for reason in sorted(set(dropped))},
        "tokens": _quantiles(kept["length"].to_pylist()),
        "linking": linking,
    }


def _shard_names():
    from ray.data.datasource import FilenameProvider

    class ShardNames(FilenameProvider):
        """part-<task>.parquet: the same names on every run (Ray appends the block index)."""

        def __init__(self):
            super().__init__(file_format="parquet")

        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-{task_index:05d}.parquet"

    return ShardNames()


def write_shards(ds, split: str, dest: Path, num_shards: int) -> list[dict]:
    """Kept records of `split` -> `num_shards` Parquet files under dest/<split>/."""
    from ray.data import SaveMode

    def shard_rows(batch: pa.Table) -> pa.Table:
        keep = pc.and_(pc.equal(batch["split"], split), pc.is_null(batch["dropped"]))
        return batch.filter(keep).select(SHARD_SCHEMA.names).cast(SHARD_SCHEMA)

    out = dest / split
    ds.map_batches(shard_rows, batch_format="pyarrow").repartition(num_shards).write_parquet(
        str(out), filename_provider=_shard_names(), mode=SaveMode.OVERWRITE
    )
    import pyarrow.parquet as pq

    files = sorted(out.glob("*.parquet")) if out.exists() else []
    return [{"file": f"{split}/{f.name}", "rows": pq.ParquetFile(f).metadata.num_rows} for f in files]


def _is_prepared_data(path: Path) -> bool:
    """A data dir written by a sqltrain older than the output marker: its manifest is ours."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"fingerprint", "splits", "columns"} <= set(manifest)


def check_prompt(cfg: Config) -> None:
    """Tokenizer, prompt template and length limit, checked in the driver before Ray starts: a
    missing model package or a template that cannot render would otherwise fail in every actor,
    and a max_seq_len below the chat template's own length would silently keep nothing."""
    from sqltrain.model.loading import ModelSourceError, load_tokenizer
    from sqltrain.prep.prompts import PromptError, build_messages, render_prompt

    try:
        tokenizer = load_tokenizer(cfg.model)
        messages = build_messages("", "", cfg.prompt)
    except (ModelSourceError, PromptError) as e:
        raise ConfigError(str(e)) from None
    overhead = len(tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"])
    if overhead + 2 > cfg.prompt.max_seq_len:  # + at least one SQL token and EOS
        raise ConfigError(f"prompt.max_seq_len={cfg.prompt.max_seq_len}: the prompt template alone takes "
                          f"{overhead} tokens, leaving no room for a schema and SQL; raise it")


def _reusable(out: Path, fp: str) -> bool:
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    files = [s["file"] for split in manifest.get("splits", {}).values() for s in split.get("shards", [])]
    return manifest.get("fingerprint") == fp and all((out / f).exists() for f in files)


def manifest_head(cfg: Config, bench: SpiderBenchmark, fp: str) -> dict:
    """What the manifest says besides the per-split stats (no timestamps: reruns reproduce it)."""
    return {
        "fingerprint": fp,
        "benchmark": str(bench.root),
        "model": cfg.model.name,
        "format": cfg.linking.format,
        "token_budget": cfg.linking.token_budget if cfg.linking.prune else None,
        "max_seq_len": cfg.prompt.max_seq_len,
        "columns": SHARD_SCHEMA.names,
        "skipped_records": dict(sorted(bench.skipped.items())),  # malformed records (data.on_error=skip)
        "validation": None,
        "splits": {},
    }


def _check_kept(cfg: Config, split: str, stats: dict) -> None:
    if stats["examples"] == 0:
        dropped = ", ".join(f"{n} {why}" for why, n in stats["dropped"].items()) or "none"
        raise ConfigError(f"prepare kept none of the {split} examples (dropped: {dropped}); raise "
                          f"prompt.max_seq_len (now {cfg.prompt.max_seq_len}) or lower linking.token_budget")


def run_prepare(cfg: Config, force: bool = False) -> PrepareResult:
    """Prepare the train and eval splits into {run_dir}/data (reused when its fingerprint matches
    and `force` is off)."""
    import ray

    from sqltrain.data import resolve_benchmark

    out = Path(cfg.run_dir) / "data"
    check_replaceable(out, _is_prepared_data, what="prepare output")
    bench = resolve_benchmark(cfg.data)
    bench.schemas  # noqa: B018 -- a missing or malformed tables.json fails here, before any hashing
    examples = {split: load_examples(bench, cfg, split) for split in splits_of(cfg)}
    fp = fingerprint(cfg, bench)
    if not force and _reusable(out, fp):
        log(f"{out} is up to date (fingerprint {fp}); reusing it")
        return PrepareResult(out, out / "manifest.json", fp, reused=True)
    check_prompt(cfg)
    from sqltrain.raycluster import check_shared, ensure_ray

    ensure_ray(cfg.cluster.address, cfg.cluster.runtime_env)
    if cfg.cluster.check_nodes:  # actors on any node read the databases and write the shards
        check_shared({"data.spider_dir": [str(p) for p in bench.sqlite_files]}, write={"run_dir": cfg.run_dir})
    seconds = build_value_indexes(bench, cfg, {e.db_id for ex in examples.values() for e in ex})
    log(f"value indexes ready in {seconds:.1f}s ({cfg.linking.cache_dir})")
    start = time.time()
    ds = prepare_dataset(cfg, bench, examples)
    # The blocks are materialized already: fetch them as they are (a projection would be a new job).
    meta = pa.concat_tables(ray.get(ds.to_arrow_refs())).drop_columns(["input_ids", "labels"])
    log(f"{meta.num_rows} examples linked, rendered and tokenized in {time.time() - start:.1f}s")
    manifest = manifest_head(cfg, bench, fp)
    manifest["validation"] = validation_record(bench, examples)
    for split in examples:
        _check_kept(cfg, split, split_stats(meta.filter(pc.equal(meta["split"], split))))
    with atomic_dir(out, legacy=_is_prepared_data) as tmp:
        for split in examples:
            part = meta.filter(pc.equal(meta["split"], split))
            stats = split_stats(part)
            stats["shards"] = write_shards(ds, split, tmp, cfg.data.num_shards)
            written = sum(s["rows"] for s in stats["shards"])
            if written != stats["examples"]:  # rows written vs examples prepared (DESIGN principle 11)
                raise RuntimeError(f"{split}: wrote {written} rows in {len(stats['shards'])} shards "
                                   f"for {stats['examples']} examples")
            stats["alpaca"] = f"{split}.alpaca.jsonl"
            kept = part.filter(pc.is_null(part["dropped"])).select(list(ALPACA_FIELDS)).to_pylist()
            atomic_write_jsonl(tmp / stats["alpaca"], (alpaca_record(**r) for r in kept))
            manifest["splits"][split] = stats
            log(f"{split}: {stats['examples']} examples, dropped {stats['dropped']}, linking {stats['linking']}")
        atomic_write_json(tmp / "manifest.json", manifest)
    log(f"wrote {out} in {time.time() - start:.1f}s")
    return PrepareResult(out, out / "manifest.json", fp, reused=False)


def share_prepared_data(source_run_dir: str | os.PathLike, run_dir: str | os.PathLike) -> None:
    """{run_dir}/data becomes a link to {source_run_dir}/data: runs that differ only in what
    training reads (Tune trials, ablation variants) train on one set of prepared shards."""
    link = Path(run_dir) / "data"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        os.symlink(Path(source_run_dir) / "data", link, target_is_directory=True)
