"""Typed config: defaults, overrides, errors naming key and file, and every YAML under configs/."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqltrain.config import Config, ConfigError, config_from_dict, load_config, parse_value, save_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.y*ml"))


def test_defaults_load_and_paths_are_absolute():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert Path(cfg.run_dir).is_absolute()
    assert cfg.deepspeed.stage == 2 and cfg.quantization.method == "nf4"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_committed_config_validates(path):
    cfg = load_config(path)
    assert cfg.to_dict()["data"]["spider_dir"]


def test_there_are_configs():
    assert CONFIGS, "configs/ holds no YAML"


def test_overrides_parse_types(tmp_path):
    cfg = load_config(None, ["train.lr=2e-4", "train.num_workers=2", "lora.target_modules=[q_proj, v_proj]",
                             "data.limit=null", "train.use_gpu=true", "run_dir=" + str(tmp_path)])
    assert cfg.train.lr == pytest.approx(2e-4)
    assert cfg.train.num_workers == 2
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.data.limit is None and cfg.train.use_gpu is True
    assert cfg.run_dir == str(tmp_path)


@pytest.mark.parametrize("text, value", [("3", 3), ("1e-5", 1e-5), ("-2", -2), ("abc", "abc"), ("true", True)])
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "train.lrr" in str(e.value) and "unknown key" in str(e.value) and str(p) in str(e.value)


def test_unknown_section(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("trian:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="trian"):
        load_config(p)


@pytest.mark.parametrize("yaml_text, key", [
    ("train:\n  lr: fast\n", "train.lr"),
    ("train:\n  num_workers: '2'\n", "train.num_workers"),
    ("deepspeed:\n  stage: 4\n", "deepspeed.stage"),
    ("quantization:\n  method: int3\n", "quantization.method"),
    ("lora:\n  target_modules: q_proj\n", "lora.target_modules"),
])
def test_wrong_types_name_the_key(tmp_path, yaml_text, key):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert key in str(e.value) and str(p) in str(e.value)


def test_bad_override_is_an_error():
    with pytest.raises(ConfigError, match="train.lr"):
        load_config(None, ["train.lr=slow"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["train.lr"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_round_trip_and_hash(tmp_path):
    cfg = load_config(None, ["train.lr=0.001"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.content_hash("train") != load_config().content_hash("train")
    assert cfg.content_hash("data") == load_config().content_hash("data")


def test_packing_and_cluster_placement_settings():
    cfg = load_config(None, [])
    assert cfg.train.packing is False  # the README's GPU figures were measured padded
    # cuDNN attention off and rows padded to a multiple of 8: the fix of the skipped steps
    assert cfg.train.sdpa_cudnn is False and cfg.train.pad_to_multiple_of == 8
    with pytest.raises(ConfigError, match="train.pad_to_multiple_of"):
        load_config(None, ["train.pad_to_multiple_of=0"])
    assert cfg.cluster.placement_strategy == "PACK" and cfg.cluster.check_nodes is True
    assert load_config(None, ["cluster.placement_strategy=STRICT_SPREAD"]).cluster.placement_strategy == "STRICT_SPREAD"
    with pytest.raises(ConfigError, match="cluster.placement_strategy"):
        load_config(None, ["cluster.placement_strategy=spread_out"])


def test_local_model_files_and_folders_become_absolute_at_load_time(tmp_path, monkeypatch):
    """Ray Tune runs each trial in its own working directory: a relative model.name or
    model.tokenizer that names a local file or folder must still find it there."""
    tmp_path = tmp_path.resolve()  # what os.getcwd() reports after chdir
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "tok").mkdir()
    (tmp_path / "hf_model").mkdir()
    cfg = load_config(None, ["model.name=models/m.gguf", "model.tokenizer=tok"])
    assert cfg.model.name == str(tmp_path / "models" / "m.gguf")
    assert cfg.model.tokenizer == str(tmp_path / "tok")
    assert load_config(None, ["model.name=hf_model"]).model.name == str(tmp_path / "hf_model")
    # A GGUF file that is not there (yet) is a local path too, not a hub id.
    assert load_config(None, ["model.name=models/later.gguf"]).model.name == str(tmp_path / "models" / "later.gguf")
    # A hub id as tokenizer beside a local GGUF stays as given.
    hub = load_config(None, ["model.name=models/m.gguf", "model.tokenizer=Qwen/Qwen2.5-Coder-0.5B-Instruct"])
    assert hub.model.tokenizer == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    # In a trial's working directory the resolved paths still name the file and the folder,
    # and a config saved and loaded there keeps them.
    trial = tmp_path / "tune" / "trial_0"
    trial.mkdir(parents=True)
    monkeypatch.chdir(trial)
    assert Path(cfg.model.name).is_file() and Path(cfg.model.tokenizer).is_dir()
    save_config(cfg, trial / "trial.yaml")
    again = load_config(trial / "trial.yaml")
    assert again.model.name == str(tmp_path / "models" / "m.gguf") and again.model.tokenizer == str(tmp_path / "tok")


@pytest.mark.parametrize("name", ["Qwen/Qwen2.5-Coder-0.5B-Instruct", "random:tiny", "smollm2-135m"])
def test_hub_ids_and_aliases_stay_as_given_beside_a_local_tokenizer(tmp_path, monkeypatch, name):
    tmp_path = tmp_path.resolve()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tok").mkdir()  # random-init presets take their tokenizer from elsewhere, e.g. a local folder
    cfg = load_config(None, [f"model.name={name}", "model.tokenizer=tok"])
    assert cfg.model.name == name
    assert cfg.model.tokenizer == str(tmp_path / "tok")
    assert load_config(None, [f"model.name={name}"]).model.tokenizer is None
