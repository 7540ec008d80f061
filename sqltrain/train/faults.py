"""Test-only fault injection for training, installed as model hooks so the loop carries none.

The driver reads $SQLTRAIN_FAULT and hands the text to every worker. Comma-separated items:

  kill@K      the last-ranked worker os._exit()s right after optimizer step K, on the run's
              first attempt only (no checkpoint restored yet): Ray Train restarts the workers
              and the run resumes from its latest checkpoint.
  inf@K       one gradient of the last-ranked worker is multiplied by inf during optimizer step K
  inf@K-L     ... during steps K to L (inclusive)

Unset (the normal case) installs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV = "SQLTRAIN_FAULT"


@dataclass(frozen=True)
class FaultSpec:
    kill_after: int | None = None
    inf_steps: frozenset[int] = frozenset()


def parse(text: str | None) -> FaultSpec:
    """The spec of an $SQLTRAIN_FAULT value; raises ValueError naming the bad item."""
    kill, inf = None, set()
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        kind, _, where = item.partition("@")
        try:
            first, _, last = where.partition("-")
            steps = range(int(first), int(last or first) + 1)
        except ValueError:
            raise ValueError(f"${ENV}: bad item {item!r}; expected kill@K, inf@K or inf@K-L") from None
        if kind == "kill" and len(steps) == 1:
            kill = steps[0]
        elif kind == "inf":
            inf.update(steps)
        else:
            raise ValueError(f"${ENV}: bad item {item!r}; expected kill@K, inf@K or inf@K-L")
    return FaultSpec(kill_after=kill, inf_steps=frozenset(inf))


def install(spec: FaultSpec, model, state, rank: int, world: int, first_attempt: bool) -> None:
    """Register the hooks of `spec` on the last-ranked worker's model. `state.step` counts the
    optimizer steps done, so the step being computed is state.step + 1."""
    if rank != world - 1:
        return
    if spec.inf_steps:
        param = next(p for p in model.parameters() if p.requires_grad)
        param.register_hook(lambda g: g * float("inf") if state.step + 1 in spec.inf_steps else g)
    if spec.kill_after is not None and first_attempt:
        def kill_before_next_forward(module, args):
            if state.step == spec.kill_after:
                os._exit(1)

        model.register_forward_pre_hook(kill_before_next_forward)
