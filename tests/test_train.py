"""Training: batching, DeepSpeed config, preflight errors, and real 2-worker Ray Train runs
(DeepSpeed ZeRO-2 over gloo on CPU) including a worker killed mid-run and resumed."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import torch

from sqltrain.config import ConfigError, load_config
from sqltrain.io import read_jsonl
from sqltrain.spider.benchmark import SpiderBenchmark
from sqltrain.train.data import ShardError, inspect_split, length_grouped, pad_batch
from sqltrain.train.deepspeed_cfg import deepspeed_config
from sqltrain.train.driver import TrainingDiverged, pick_export, plan_steps, run_train
from sqltrain.train.faults import ENV as FAULT_ENV

sys.path.insert(0, str(Path(__file__).parent))
from train_shards import write_shards  # noqa: E402


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "model-cache"  # shared with test_model
    path.mkdir(exist_ok=True)
    return path


def train_cfg(run_dir, cache, *overrides):
    """A 2-worker ZeRO-2 CPU config on the tiny random llama (small enough for CI)."""
    return load_config(None, [
        f"run_dir={run_dir}", f"model.cache_dir={cache}", "model.name=random:tiny",
        "quantization.method=none", "model.gradient_checkpointing=false",
        "train.num_workers=2", "train.cpus_per_worker=0.5", "train.micro_batch_size=4",
        "train.max_steps=6", "train.log_every=1", "train.eval_every=3", "train.save_every=3",
        "train.eval_examples=16", "train.lr=1e-2", "train.keep_best=2", "train.max_failures=1",
        "deepspeed.stage=2", "deepspeed.bucket_size=1000000", *overrides,
    ])


@pytest.fixture(scope="module")
def ray_local():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def shards(run_dir: Path, cache: Path, mini_dir: Path, repeat_first: bool) -> None:
    from sqltrain.model.loading import load_tokenizer

    bench = SpiderBenchmark(mini_dir)
    train = bench.examples("train")[:64]
    if repeat_first:
        train = [train[0]] * len(train)
    tok = load_tokenizer(train_cfg(run_dir, cache).model)
    write_shards(run_dir, bench, tok, {"train": train, "dev": bench.examples("dev")[:16]})


# --- fast unit tests ------------------------------------------------------------------------


def test_pad_batch_pads_right_and_masks_labels():
    batch = pad_batch([([5, 6, 7], [-100, 6, 7]), ([8], [8])])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_length_grouping_keeps_similar_lengths_together_and_drops_the_tail():
    rng = random.Random(0)
    rows = [([1] * n, [1] * n) for n in [rng.randint(5, 400) for _ in range(203)]]
    groups = list(length_grouped(rows, 4, random.Random(1)))
    assert len(groups) == 203 // 4 and all(len(g) == 4 for g in groups)
    spread = sum(max(len(r[0]) for r in g) - min(len(r[0]) for r in g) for g in groups) / len(groups)
    assert spread < 60  # random 4-row groups would spread ~240 tokens
    padded = sum(4 * max(len(r[0]) for r in g) for g in groups)
    assert padded < 1.2 * sum(len(r[0]) for g in groups for r in g)


@pytest.mark.slow  # starts a local Ray: the reference is the worker's own Ray Data ingest
def test_rebuilt_batches_are_the_ones_a_one_worker_run_trains_on(tmp_path, model_cache, mini_dir, ray_local):
    """benchmarks/rebuild_batches.py reads the shards in file order; the worker gets them through
    Ray Data (preserve_order, a streaming split of one). Both give the same micro batches, in the
    same steps, in the first and the second epoch."""
    import ray.data

    from sqltrain.train.data import NUMERIC_COLUMNS, micro_batch_stream

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import rebuild_batches

    run = tmp_path / "run"
    shards(run, model_cache, mini_dir, repeat_first=False)
    info = inspect_split(str(run), "train")
    ds = ray.data.read_parquet(info.files, override_num_blocks=4).select_columns(NUMERIC_COLUMNS)
    ds.context.execution_options.preserve_order = True
    (split,) = ds.streaming_split(1, equal=True)
    per_epoch = info.rows // 4
    stream = micro_batch_stream(split, 4, per_epoch, seed=7)
    trained = [next(stream) for _ in range(per_epoch + 3)]  # into the second epoch
    steps = [1, 5, per_epoch, per_epoch + 3]
    rebuilt = rebuild_batches.rebuild(str(run), steps, seed=7, micro_batch_size=4)
    for step in steps:
        assert all(torch.equal(rebuilt[step][k], trained[step - 1][k]) for k in ("input_ids", "labels", "attention_mask"))


@pytest.mark.slow  # starts a local Ray: the shuffle is Ray Data's own
def test_shuffle_buffer_mixes_a_database_sorted_shard_every_epoch_and_resumes_exactly(ray_local):
    """Rows in Spider's order (sorted by database, train_others last) as a real Ray Data shard.
    In shard order, the last quarter of the rows only ever lands in the last micro batches of an
    epoch; with a buffer of all rows it is spread over the epoch, differently each epoch, the
    same for the same seed, and a resumed stream continues with the micro batch after the skip."""
    import ray.data

    from sqltrain.train.data import micro_batch_stream

    n, mb = 512, 4
    per_epoch = n // mb
    rng = random.Random(0)  # row i holds the token id i + 1, with a random length
    items = [{"input_ids": [i + 1] * k, "labels": [i + 1] * k} for i, k in enumerate(rng.randint(4, 60) for _ in range(n))]
    shard = ray.data.from_items(items, override_num_blocks=8).iterator()

    def epochs(count, buffer, seed=42, skip=0):
        stream = micro_batch_stream(shard, mb, per_epoch, seed, skip=skip, shuffle_buffer=buffer)
        batches = [sorted(int(r[0]) - 1 for r in next(stream)["input_ids"]) for _ in range(count * per_epoch - skip)]
        return batches

    def groups(batches):
        return {tuple(b) for b in batches}

    def late_rows_in_first_half(batches):  # rows of the last quarter, in the epoch's first half
        return sum(i >= 3 * n // 4 for b in batches[:per_epoch // 2] for i in b)

    ordered = epochs(1, buffer=0)
    assert late_rows_in_first_half(ordered) == 0  # today's shard order: the tail comes last
    shuffled = epochs(2, buffer=n)
    first, second = shuffled[:per_epoch], shuffled[per_epoch:]
    assert sorted(i for b in first for i in b) == list(range(n))  # every row once per epoch
    assert late_rows_in_first_half(first) > n // 16  # ~n/8 expected when fully mixed
    assert sorted(i for b in second for i in b) == list(range(n))
    # Other rows share a micro batch in the next epoch (not merely the same batches reordered).
    assert len(groups(first) & groups(second)) < per_epoch // 4
    assert epochs(2, buffer=n) == shuffled  # reproducible for the seed...
    assert len(groups(epochs(1, buffer=n, seed=7)) & groups(first)) < per_epoch // 4  # ...and a function of it
    skip = per_epoch + 9  # resume inside the second epoch
    assert epochs(2, buffer=n, skip=skip) == shuffled[skip:]


def test_deepspeed_config_follows_train_and_zero_sections(tmp_path):
    cfg = load_config(None, ["deepspeed.stage=3", "train.micro_batch_size=2", "train.grad_accum=8",
                             "deepspeed.offload_optimizer=true", "train.max_grad_norm=0.5"])
    ds = deepspeed_config(cfg, world_size=4, dtype_name="bf16")
    assert ds["train_batch_size"] == 2 * 8 * 4 and ds["gradient_clipping"] == 0.5
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    z = ds["zero_optimization"]
    assert z["stage"] == 3 and z["offload_optimizer"]["device"] == "cpu"
    assert z["stage3_gather_16bit_weights_on_model_save"] is False


def test_bf16_overflow_check_is_off_unless_asked_for():
    assert deepspeed_config(load_config(None, []), 1, "bf16")["bf16"]["check_grad_overflow"] is False
    cfg = load_config(None, ["deepspeed.check_grad_overflow=true"])
    assert deepspeed_config(cfg, 1, "bf16")["bf16"]["check_grad_overflow"] is True


@pytest.mark.parametrize("overrides, expected", [
    ([], False),  # auto on CPU: inductor's CPU compile time would outweigh the gain
    (["train.use_gpu=true"], True),
    (["train.use_gpu=true", "train.num_workers=2"], False),  # measured on one GPU worker only
    (["train.use_gpu=true", "train.num_workers=2", "train.compile=true"], True),
    (["train.use_gpu=true", "deepspeed.stage=3"], False),
    (["train.compile=on"], True),  # YAML's on/off are booleans
    (["train.use_gpu=true", "train.compile=off"], False),
])
def test_regional_compile_follows_train_compile(overrides, expected):
    from sqltrain.train.worker import compile_enabled

    assert compile_enabled(load_config(None, overrides)) is expected


@pytest.mark.parametrize("overrides, device, expected", [
    (["train.use_gpu=true", "train.gpus_per_worker=0.5"], ("cuda", 0), 0.5),  # two Tune trials per GPU
    (["train.use_gpu=true", "train.gpus_per_worker=0.25"], ("cuda", 1), 0.25),
    (["train.use_gpu=true"], ("cuda", 0), None),  # a whole GPU (1.0): no limit
    (["train.use_gpu=true", "train.gpus_per_worker=2"], ("cuda", 0), None),
    (["train.use_gpu=true", "train.gpus_per_worker=0"], ("cuda", 0), None),
    (["train.gpus_per_worker=0.5"], ("cuda", 0), None),  # train.use_gpu=false
    (["train.use_gpu=true", "train.gpus_per_worker=0.5"], ("cpu",), None),
])
def test_gpu_memory_fraction_is_the_workers_share_of_a_shared_gpu(overrides, device, expected):
    from sqltrain.train.worker import gpu_memory_fraction

    fraction = gpu_memory_fraction(load_config(None, overrides), torch.device(*device))  # no GPU needed
    assert fraction is None if expected is None else fraction == pytest.approx(expected)


def test_compile_setting_rejects_unknown_words():
    with pytest.raises(ConfigError, match="train.compile"):
        load_config(None, ["train.compile=sometimes"])


def test_zero_stage_4_is_rejected_by_the_config():
    with pytest.raises(ConfigError, match="deepspeed.stage"):
        load_config(None, ["deepspeed.stage=4"])


def test_missing_shards_fail_before_any_worker(tmp_path, model_cache):
    cfg = train_cfg(tmp_path / "run", model_cache)
    with pytest.raises(ShardError, match="sqltrain prepare"):
        run_train(cfg)
    assert not (tmp_path / "run" / "train" / "checkpoints").exists()


def test_nf4_with_zero3_on_cpu_fails_before_any_worker(tmp_path, model_cache):
    with pytest.raises(ConfigError, match="needs GPUs"):
        run_train(train_cfg(tmp_path / "run", model_cache, "deepspeed.stage=3", "quantization.method=nf4"))


def test_shards_without_token_columns_are_rejected(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "data" / "train").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["a"], "input_ids": [[1, 2]]}), tmp_path / "data" / "train" / "p.parquet")
    with pytest.raises(ShardError, match="labels, length"):
        inspect_split(str(tmp_path), "train")


def test_shards_that_disagree_with_the_manifest_fail_before_any_worker(tmp_path, model_cache, mini_dir):
    # The finding: a prepare whose second shard stayed on another node's disk left a manifest
    # listing both and one shard here; training must not run on half the data.
    import pyarrow.parquet as pq

    run = tmp_path / "run"
    shards(run, model_cache, mini_dir, repeat_first=False)
    assert inspect_split(str(run), "train").rows == 64  # as written: passes
    part = run / "data" / "train" / "part-00001.parquet"
    table = pq.read_table(part)
    part.unlink()
    with pytest.raises(ShardError, match=r"32 rows in 1 shard\(s\), but manifest.json lists 64 examples in 2 "
                                         r"\(missing part-00001.parquet\)"):
        run_train(train_cfg(run, model_cache))
    pq.write_table(table.slice(0, 30), part)  # a shard with other rows than listed
    with pytest.raises(ShardError, match="62 rows in 2 shard"):
        inspect_split(str(run), "train")
    pq.write_table(table, part)
    pq.write_table(table, run / "data" / "train" / "part-00002.parquet")  # a file prepare did not write
    with pytest.raises(ShardError, match="not in the manifest: part-00002.parquet"):
        inspect_split(str(run), "train")
    assert not (run / "train" / "checkpoints").exists()


def test_unknown_model_fails_before_any_worker(tmp_path, model_cache, mini_dir):
    run = tmp_path / "run"
    shards(run, model_cache, mini_dir, repeat_first=False)
    with pytest.raises(ConfigError, match="unknown random-init preset"):
        run_train(train_cfg(run, model_cache, "model.name=random:llama-9000"))
    assert not (run / "train" / "checkpoints").exists()


def test_step_plan_rejects_too_few_rows(tmp_path, model_cache, mini_dir):
    run = tmp_path / "run"
    shards(run, model_cache, mini_dir, repeat_first=False)
    cfg = train_cfg(run, model_cache, "train.micro_batch_size=64")
    with pytest.raises(ConfigError, match="too few"):
        plan_steps(cfg, inspect_split(str(run), "train"), inspect_split(str(run), "dev"))
    plan = plan_steps(train_cfg(run, model_cache, "train.max_steps=null", "train.epochs=2"),
                      inspect_split(str(run), "train"), inspect_split(str(run), "dev"))
    assert plan.steps_per_epoch == 64 // 2 // 4 and plan.total_steps == 16


def test_train_cli_reports_bad_config_with_exit_code_2(tmp_path, capsys):
    from sqltrain.cli import main

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("deepspeed:\n  stage: 4\n")
    assert main(["train", "--config", str(cfg_file)]) == 2
    assert "ZeRO stage must be 0, 1, 2 or 3" in capsys.readouterr().err


# --- real runs: 2 Ray workers, DeepSpeed ZeRO-2 over gloo -----------------------------------


@pytest.fixture(scope="module")
def repeated_batch_run(tmp_path_factory, model_cache, mini_dir, ray_local):
    run = tmp_path_factory.mktemp("repeated") / "run"
    shards(run, model_cache, mini_dir, repeat_first=True)
    cfg = train_cfg(run, model_cache)
    return cfg, run_train(cfg)


@pytest.mark.slow
def test_loss_is_finite_and_decreasing_on_a_repeated_batch(repeated_batch_run):
    cfg, result = repeated_batch_run
    rows = read_jsonl(result.metrics_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    losses = [r["loss"] for r in rows]
    assert all(torch.isfinite(torch.tensor(x)) for x in losses)
    assert losses[-1] < losses[0] - 0.3
    assert sum(losses[3:]) < sum(losses[:3])
    assert {r["step"] for r in rows if "dev_loss" in r} == {3, 6}
    assert all(r["tokens_per_s"] > 0 and r["grad_norm"] is not None for r in rows)


@pytest.mark.slow
def test_checkpoints_are_small_and_hold_adapter_engine_and_state(repeated_batch_run):
    cfg, result = repeated_batch_run
    ckpt = Path(result.checkpoint_dir)
    assert json.loads((ckpt / "state.json").read_text())["step"] == 6
    assert {p.name for p in (ckpt / "engine" / "zero").iterdir()} >= {
        "mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"}
    module = torch.load(ckpt / "engine" / "zero" / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    assert module and all("lora_" in k for k in module)  # never the frozen base
    size = sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())
    assert size < 2_000_000  # the tiny base alone is 13 MB


@pytest.mark.slow
def test_final_adapter_loads_with_peft_and_changes_logits(repeated_batch_run):
    from peft import PeftModel

    from sqltrain.config import config_from_dict
    from sqltrain.model.loading import load_base_model

    cfg, result = repeated_batch_run
    adapter = Path(result.adapter_dir)
    assert adapter == Path(cfg.run_dir) / "train" / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "sqltrain_config.yaml", "prompt.json"} <= {p.name for p in adapter.iterdir()}
    assert json.loads((adapter / "prompt.json").read_text())["system"] == cfg.prompt.system
    import yaml

    assert config_from_dict(yaml.safe_load((adapter / "sqltrain_config.yaml").read_text())) == cfg
    base = load_base_model(cfg)
    ids = torch.tensor([[1, 504, 3000, 42, 7, 99]])
    with torch.no_grad():
        before = base(ids).logits.clone()
        tuned = PeftModel.from_pretrained(base, str(adapter))
        after = tuned(ids).logits
    assert (after - before).abs().max() > 1e-3


@pytest.mark.slow
def test_rerun_with_another_training_config_is_refused(repeated_batch_run, model_cache):
    cfg, _ = repeated_batch_run
    with pytest.raises(ConfigError, match="checkpoints of another run"):
        run_train(train_cfg(cfg.run_dir, model_cache, "train.lr=1e-3"))


MINI_RUN = ("data.limit=64", "data.spider_dir=mini", "lora.dropout=0.0")
"""The 2-worker run on the real prepared mini shards that the resume and packing tests compare
against. No LoRA dropout: packing changes a mask's shape (so its draws); that a resumed run draws
the same masks is test_dropout_masks_are_a_function_of_seed_step_and_rank."""
_uninterrupted: dict[tuple, list[dict]] = {}


def mini_run(run: Path, cache: Path, *extra: str, fault: str = "") -> tuple[list[dict], object]:
    """Prepare (the real `sqltrain prepare` of the mini benchmark) and train MINI_RUN + extra in
    `run` on the running Ray; the metrics rows and the TrainResult."""
    from sqltrain.prep.pipeline import run_prepare

    cfg = train_cfg(run, cache, *MINI_RUN, *extra)
    run_prepare(cfg)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(FAULT_ENV, fault)
        result = run_train(cfg)
    return read_jsonl(result.metrics_path), result


def uninterrupted_mini_run(base: Path, cache: Path) -> list[dict]:
    """MINI_RUN trained once per test session (a 2-worker CPU run costs ~2 min), shared by the
    tests that compare a resumed or packed run with it."""
    if not _uninterrupted:
        _uninterrupted["rows"] = mini_run(base / "uninterrupted", cache)[0]
    return _uninterrupted["rows"]


@pytest.mark.slow
def test_dev_rows_are_the_first_in_file_order_on_every_run(tmp_path, ray_local):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sqltrain.train.data import SplitInfo
    from sqltrain.train.driver import Plan, _read_dev

    files = []
    for f in range(4):  # several files and row groups: blocks that may finish in any order
        ids = [[f * 100 + i] * (1 + i % 5) for i in range(25)]
        table = pa.table({"input_ids": ids, "labels": ids, "length": [len(x) for x in ids]})
        files.append(str(tmp_path / f"part-{f}.parquet"))
        pq.write_table(table, files[-1], row_group_size=5)
    plan = Plan(total_steps=1, steps_per_epoch=1, train=SplitInfo(files, 100), dev=SplitInfo(files, 100), dev_rows=37)
    firsts = [[r["input_ids"][0] for r in _read_dev(plan).take_all()] for _ in range(3)]
    assert firsts[0] == [f * 100 + i for f in range(4) for i in range(25)][:37]
    assert firsts[1] == firsts[0] == firsts[2]


def test_dropout_masks_are_a_function_of_seed_step_and_rank():
    from sqltrain.train.worker import _seed_step

    drop = torch.nn.Dropout(0.5)

    def mask(seed, step, rank):
        _seed_step(seed, step, rank)
        return drop(torch.ones(256))

    assert torch.equal(mask(42, 5, 1), mask(42, 5, 1))  # a resumed step draws what the first attempt drew
    assert not torch.equal(mask(42, 5, 1), mask(42, 6, 1)) and not torch.equal(mask(42, 5, 1), mask(42, 5, 0))


@pytest.mark.slow
def test_killed_worker_resumes_from_the_last_checkpoint_and_reproduces_the_uninterrupted_losses(
        tmp_path, model_cache, ray_local):
    straight = uninterrupted_mini_run(tmp_path, model_cache)
    rows, result = mini_run(tmp_path / "killed", model_cache, fault="kill@5")  # the last worker exits after step 5, first attempt only
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["resumed_from"] for r in rows] == [None, None, None, 3, 3, 3]  # continued, not restarted
    assert rows[3]["tokens"] > rows[2]["tokens"]  # token counter restored from the checkpoint too
    # Same rows in the same order, same seeds, same optimizer state: the same losses.
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in straight], abs=1e-5)
    # ...and the same dev rows (the first train.eval_examples in file order): the same dev losses.
    assert [r["dev_loss"] for r in rows if "dev_loss" in r] == pytest.approx(
        [r["dev_loss"] for r in straight if "dev_loss" in r], abs=1e-5)
    assert result.metrics["step"] == 6
    assert (Path(result.adapter_dir) / "adapter_model.safetensors").exists()


def test_each_run_gets_its_own_folder_on_a_shared_storage_path(tmp_path, model_cache, mini_dir):
    """The Ray Train run folder is storage_path/storage_run_name: a rerun of the same config into a
    fresh run_dir (same basename, same storage_path, e.g. a cluster's shared storage) must get a
    folder of its own, or Ray would hand it the first run's finished checkpoints."""
    import shutil

    from sqltrain.train.driver import run_id, storage_run_name

    first, rerun = tmp_path / "a" / "run", tmp_path / "b" / "run"
    shards(first, model_cache, mini_dir, repeat_first=False)
    shutil.copytree(first / "data", rerun / "data")
    name = storage_run_name(train_cfg(first, model_cache))
    assert name == storage_run_name(train_cfg(first, model_cache)) and name.startswith("run-")  # stable
    other_lr = train_cfg(first, model_cache, "train.lr=5e-3")
    assert run_id(other_lr) != run_id(train_cfg(first, model_cache)) and storage_run_name(other_lr) != name
    # The same config and shards in a fresh run_dir: the same run id, but not the first run's folder.
    assert run_id(train_cfg(rerun, model_cache)) == run_id(train_cfg(first, model_cache))
    assert storage_run_name(train_cfg(rerun, model_cache)) != name


def test_resume_refuses_checkpoints_of_other_shards(tmp_path, model_cache, mini_dir):
    # Checkpoints exist (the snapshot file) and were written for shards with another fingerprint.
    from sqltrain.train.driver import _check_resumable, run_id

    run = tmp_path / "run"
    shards(run, model_cache, mini_dir, repeat_first=False)
    manifest = run / "data" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "fingerprint": "aaaa"}))
    cfg = train_cfg(run, model_cache)
    (run / "train" / "checkpoints").mkdir(parents=True)
    (run / "train" / "checkpoints" / "checkpoint_manager_snapshot.json").write_text("{}")
    _check_resumable(cfg)  # first run: records its id
    assert _check_resumable(cfg) is None  # same run: resumes
    before = run_id(cfg)
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "fingerprint": "bbbb"}))  # prepare re-ran
    assert run_id(cfg) != before
    with pytest.raises(ConfigError, match="prepared shards"):
        _check_resumable(cfg)


# --- the non-finite guard, export choice, pinned numbers and exact resume --------------------


def test_fault_spec_parses_kill_and_inf_ranges_and_rejects_junk():
    from sqltrain.train.faults import parse

    spec = parse("kill@5, inf@2-4,inf@9")
    assert spec.kill_after == 5 and spec.inf_steps == {2, 3, 4, 9}
    assert parse(None).kill_after is None and not parse("").inf_steps
    for bad in ("boom@3", "inf@x", "kill@1-3", "inf"):
        with pytest.raises(ValueError, match="SQLTRAIN_FAULT"):
            parse(bad)


class _Ckpt:
    def __init__(self, path):
        self.path = path


def _result(dev_losses: dict[int, float], last_step: int):
    from types import SimpleNamespace

    kept = [(_Ckpt(f"ckpt-{s}"), {"step": s, "dev_loss": d}) for s, d in dev_losses.items()]
    last = next(c for c, m in kept if m["step"] == last_step)
    return SimpleNamespace(best_checkpoints=kept, checkpoint=last, metrics=None)


def test_export_best_picks_lowest_finite_dev_loss_and_last_picks_the_latest():
    result = _result({200: 0.29, 400: float("nan"), 535: 0.31}, last_step=535)
    best, metrics = pick_export(load_config(None, []), result)
    assert best.path == "ckpt-200" and metrics["step"] == 200  # NaN is never best
    last, metrics = pick_export(load_config(None, ["train.export=last"]), result)
    assert last.path == "ckpt-535" and metrics["step"] == 535
    only_nan = _result({400: float("nan"), 535: float("inf")}, last_step=535)
    assert pick_export(load_config(None, []), only_nan)[0].path == "ckpt-535"  # nothing finite: the last


def test_guard_settings_are_validated():
    assert load_config(None, []).train.skip_nonfinite is True
    with pytest.raises(ConfigError, match="train.export"):
        load_config(None, ["train.export=first"])


# Losses of the first six steps of the repeated-batch run (tiny random llama, 2 CPU workers,
# ZeRO-2, fp32). They move only when the model, optimizer, loss or batching numerics change:
# then check the change was meant and pin the new values. Last re-pinned for
# train.pad_to_multiple_of=8 (2026-12-07): LoRA dropout draws its masks over the padded width, so
# steps 3-6 moved (with lora.dropout=0 the losses of pad 1 and pad 8 agree to 1e-5; with pad 1
# and dropout these were 10.5594, 10.3885, 10.0892, 10.1524).
PINNED_LOSSES = [10.8526, 10.8526, 10.5599, 10.3884, 10.0844, 10.1957]  # step 1 has lr 0 (warmup)


@pytest.mark.slow
def test_first_losses_match_the_pinned_values(repeated_batch_run):
    cfg, result = repeated_batch_run
    losses = [r["loss"] for r in read_jsonl(result.metrics_path)]
    assert losses == pytest.approx(PINNED_LOSSES, abs=2e-3)


@pytest.mark.slow
def test_export_is_the_best_checkpoint_and_says_so(repeated_batch_run):
    cfg, result = repeated_batch_run
    rows = {r["step"]: r for r in read_jsonl(result.metrics_path) if "checkpoint" in r}
    best_step = min(rows, key=lambda s: rows[s]["dev_loss"])
    training = json.loads((Path(result.adapter_dir) / "training.json").read_text())
    assert training["exported"]["step"] == best_step == result.exported["step"]
    assert training["diverged"] is None and training["skipped_steps"] == 0
    summary = json.loads((Path(cfg.run_dir) / "train" / "summary.json").read_text())
    assert summary["exported"]["step"] == best_step and summary["skipped_steps"] == 0


def _finite_adapter(adapter: Path) -> bool:
    from safetensors.torch import load_file

    return all(torch.isfinite(t).all() for t in load_file(adapter / "adapter_model.safetensors").values())


@pytest.mark.slow
def test_an_inf_gradient_step_is_skipped_counted_and_training_finishes(tmp_path, model_cache, mini_dir, ray_local, monkeypatch):
    # bf16, the precision of GPU runs: DeepSpeed's ZeRO-2 bf16 path applies a non-finite step
    # unless the guard makes it skip (fp32 and fp16 skip on their own).
    run = tmp_path / "run"
    shards(run, model_cache, mini_dir, repeat_first=True)
    monkeypatch.setenv(FAULT_ENV, "inf@2")
    result = run_train(train_cfg(run, model_cache, "model.dtype=bf16"))
    rows = read_jsonl(result.metrics_path)
    assert [r["skipped_steps"] for r in rows] == [0, 1, 1, 1, 1, 1]
    assert all(r["loss"] is None or np_finite(r["loss"]) for r in rows) and rows[1]["loss"] is None
    assert result.skipped_steps == 1 and result.diverged is None
    assert _finite_adapter(Path(result.adapter_dir))
    assert rows[-1]["loss"] < rows[0]["loss"]  # it went on learning after the skipped step
    assert (run / "train" / "nonfinite" / "step-2-rank-1.pt").exists()  # kept for diagnose_nonfinite.py
    # The replay script runs on what the worker kept (the injected inf is not in the batch: finite).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import diagnose_nonfinite

    out = tmp_path / "diagnose.json"
    assert diagnose_nonfinite.main([str(run), "--backend", "eager", "--out", str(out),
                                    "model.attn_implementation=eager"]) == 0
    report = json.loads(out.read_text())
    replay = report["eager"]["step-2-rank-1.pt"]
    assert np_finite(replay["grad_norm"]) and replay["born_in"] is None and replay["n_nonfinite_grads"] == 0
    assert report["compiled"]["step-2-rank-1.pt"]["n_nonfinite_grads"] == 0
    assert all(isinstance(t, str) and t for t in report["rows"]["step-2-rank-1.pt"])
    # Without the adapter: the run's config and a fresh LoRA (B drawn, not zero: A gets gradients too).
    assert diagnose_nonfinite.main([str(run), "--config", str(Path(result.adapter_dir) / "sqltrain_config.yaml"),
                                    "--backend", "eager", "--out", str(out)]) == 0
    fresh = json.loads(out.read_text())["eager"]["step-2-rank-1.pt"]
    assert np_finite(fresh["grad_norm"]) and fresh["grad_norm"] > 0
    assert fresh["n_lora_grads"] == replay["n_lora_grads"] and fresh["n_nonfinite_grads"] == 0


def np_finite(x) -> bool:
    import math

    return math.isfinite(x)


@pytest.mark.slow
def test_consecutive_inf_gradients_stop_the_run_and_generation_refuses_its_adapter(tmp_path, model_cache, mini_dir,
                                                                                  ray_local, monkeypatch):
    from sqltrain.train.checkpoints import DivergedAdapterError, check_adapter_trusted

    run = tmp_path / "run"
    shards(run, model_cache, mini_dir, repeat_first=True)
    monkeypatch.setenv(FAULT_ENV, "inf@4-6")
    with pytest.raises(TrainingDiverged, match=r"step 6: 3 optimizer steps in a row .*train.lr"):
        run_train(train_cfg(run, model_cache, "model.dtype=bf16", "train.max_skipped_steps=3"))
    adapter = run / "train" / "adapter"
    training = json.loads((adapter / "training.json").read_text())
    assert training["exported"]["step"] == 3 and training["diverged"].startswith("step 6")
    assert _finite_adapter(adapter)
    with pytest.raises(DivergedAdapterError, match="diverged"):
        check_adapter_trusted(adapter)
    from sqltrain.cli import main

    assert main(["generate", "--config", str(_write_cfg(tmp_path, run, model_cache)), "--adapter", str(adapter)]) == 2


def _write_cfg(tmp_path, run, cache) -> Path:
    path = tmp_path / "gen.yaml"
    path.write_text(f"run_dir: {run}\nmodel:\n  name: random:tiny\n  cache_dir: {cache}\n")
    return path
