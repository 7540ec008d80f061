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


def skip_nonfinite_steps(engine) -> None:
    """Make DeepSpeed skip every optimizer step whose global gradient norm is not finite, using
    the norm that gradient clipping computes anyway (one host sync per step, no extra kernels).

    DeepSpeed's ZeRO-1/2 optimizer already does this in fp16 and fp32, and ZeRO-3 and its bf16
    optimizer always do; ZeRO-1/2 in bf16 only does it when `bf16.check_grad_overflow` is on,
    a flag that also scans every gradient tensor for inf/NaN (an amax + amin per tensor: 16% of
    an 8B QLoRA step on an H200). With neither, a non-finite norm makes the clip factor 0 and
    inf * 0 = NaN: one bad step poisons the LoRA weights for good (the Qwen2.5-0.5B recipe went
    NaN at step ~390 that way). So the flag goes on and the per-tensor scan becomes a no-op;
    the norm test remains, and a skipped step is a DeepSpeed overflow like any other
    (no update, no LR-scheduler step, `engine.was_step_applied()` is False)."""
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

    opt = engine.optimizer
    if isinstance(opt, DeepSpeedZeroOptimizer) and not opt.check_grad_overflow:
        opt.check_grad_overflow = True
        opt.check_overflow = _no_tensor_scan.__get__(opt)


def _no_tensor_scan(self, partition_gradients: bool = True) -> None:
    # DeepSpeedZeroOptimizer.step() calls this before taking the norm; the norm decides.
    self.overflow = False
