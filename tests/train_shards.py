"""Test-only writer of training shards in the `sqltrain prepare` layout.

It tokenizes the mini benchmark with a deliberately simple prompt (question + table names), so
the training tests do not depend on the prep stage. It writes {run_dir}/data/<split>/*.parquet
with the shard contract's columns and a manifest.json in prepare's layout (the parts training
reads: per split the example count and each shard's file and rows).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([
    ("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())), ("length", pa.int32()),
    ("id", pa.string()), ("db_id", pa.string()), ("hardness", pa.string()),
])


def encode(tokenizer, question: str, tables: list[str], sql: str) -> tuple[list[int], list[int]]:
    messages = [{"role": "user", "content": f"Tables: {', '.join(tables)}\nQuestion: {question}\nSQL:"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    t_ids = tokenizer(sql + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return p_ids + t_ids, [-100] * len(p_ids) + t_ids


def write_shards(run_dir: Path, bench, tokenizer, splits: dict[str, list], num_shards: int = 2) -> Path:
    """Write the given examples (sqltrain.spider Example objects) per split name."""
    data = run_dir / "data"
    manifest = {"fingerprint": None, "columns": SCHEMA.names, "splits": {}}
    for split, examples in splits.items():
        rows = []
        for ex in examples:
            ids, labels = encode(tokenizer, ex.question, bench.schemas[ex.db_id].table_names, ex.query)
            rows.append({"input_ids": ids, "labels": labels, "length": len(ids), "id": ex.id, "db_id": ex.db_id, "hardness": ex.hardness})
        (data / split).mkdir(parents=True, exist_ok=True)
        shards = []
        for s in range(num_shards):
            part = rows[s::num_shards]
            pq.write_table(pa.Table.from_pylist(part, schema=SCHEMA), data / split / f"part-{s:05d}.parquet")
            shards.append({"file": f"{split}/part-{s:05d}.parquet", "rows": len(part)})
        manifest["splits"][split] = {"examples": len(rows), "shards": shards}
    (data / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return data
