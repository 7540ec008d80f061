"""Resolve the benchmark a config points at: a Spider-layout dir or the embedded mini benchmark."""

from __future__ import annotations

from sqltrain.config import MINI, DataConfig
from sqltrain.spider.benchmark import SpiderBenchmark
from sqltrain.spider.validation import ValidationCarve


def benchmark_root(spider_dir: str):
    """Path of a Spider-layout dir; "mini" generates the embedded mini benchmark once (cached)."""
    if spider_dir == MINI:
        from sqltrain.minibench.build import mini_benchmark_dir

        return mini_benchmark_dir()
    return spider_dir


def validation_carve(data_cfg: DataConfig) -> ValidationCarve:
    """The config's validation carve (data.validation), for a SpiderBenchmark."""
    return ValidationCarve(data_cfg.validation.fraction, data_cfg.validation.seed)


def resolve_benchmark(data_cfg: DataConfig) -> SpiderBenchmark:
    return SpiderBenchmark(benchmark_root(data_cfg.spider_dir), on_error=data_cfg.on_error,
                           validation=validation_carve(data_cfg))
