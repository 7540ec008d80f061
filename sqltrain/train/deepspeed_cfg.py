"""The DeepSpeed config dict, built from cfg.deepspeed and cfg.train (no JSON files to drift)."""

from __future__ import annotations

from typing import Any

from sqltrain.config import Config

_HUGE = 10**12  # steps_per_print: our own metrics replace DeepSpeed's console logging


def deepspeed_config(cfg: Config, world_size: int, dtype_name: str) -> dict[str, Any]:
    """DeepSpeed config for `world_size` workers computing in dtype_name ("bf16"|"fp16"|"fp32")."""
    t, z = cfg.train, cfg.deepspeed
    zero: dict[str, Any] = {
        "stage": z.stage,
        "reduce_bucket_size": z.bucket_size,
        "allgather_bucket_size": z.bucket_size,
        "contiguous_gradients": True,
        # Overlapping needs a side stream: a GPU feature; on CPU it only adds copies.
        "overlap_comm": t.use_gpu,
    }
    if z.stage == 3:
        zero.update(
            stage3_prefetch_bucket_size=z.bucket_size,
            stage3_param_persistence_threshold=z.bucket_size // 50,
            # Adapters are gathered explicitly (GatheredParameters); never consolidate the base.
            stage3_gather_16bit_weights_on_model_save=False,
        )
    if z.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": t.use_gpu}
    return {
        "train_micro_batch_size_per_gpu": t.micro_batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "train_batch_size": t.micro_batch_size * t.grad_accum * world_size,
        "gradient_clipping": t.max_grad_norm,
        "bf16": {"enabled": dtype_name == "bf16", "check_grad_overflow": z.check_grad_overflow},
        "fp16": {"enabled": dtype_name == "fp16"},
        "zero_optimization": zero,
        # We pass a torch AdamW: DeepSpeed's fused/CPU Adam would JIT-compile CUDA/C++ ops.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": _HUGE,
        "wall_clock_breakdown": False,
    }
