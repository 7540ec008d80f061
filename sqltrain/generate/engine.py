"""One model replica that turns batches of prompts into SQL.

`SQLGenerator` is a Ray Data callable class (``ds.map_batches(SQLGenerator, concurrency=N,
num_gpus=...)``): Ray builds it once per actor, so the model loads once per replica and stays
on its GPU (or the CPU) for every batch. It is also usable in-process, which is how tests and
the throughput benchmark's baseline drive it.

Decoding is greedy on left-padded batches (decoder-only models continue from the last
position, so padding must sit on the left). A batch stops as soon as every row has finished,
where a row finishes at EOS or when its text holds a complete answer (`sql_complete`: a ';',
a closing code fence or a blank line after the query) — models that keep talking after the
SQL would otherwise burn `max_new_tokens` on every row of the batch.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqltrain.config import Config, config_from_dict
from sqltrain.generate.extract import extract_sql, sql_complete

# Characters that can end an answer; only tokens containing one trigger the (costly) text check.
END_CHARS = (";", "`", "\n")


@lru_cache(maxsize=4)
def _ending_token_ids(tokenizer) -> frozenset[int]:
    """Token ids whose text contains a character that can end an answer."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return frozenset(i for i, t in enumerate(texts) if any(c in t for c in END_CHARS))


def make_stopping_criteria(tokenizer, prompt_len: int):
    """A per-row StoppingCriteria: True for rows whose new text is a finished answer."""
    import torch
    from transformers import StoppingCriteria

    ending = torch.tensor(sorted(_ending_token_ids(tokenizer)))

    class StopWhenSQLEnds(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            hit = torch.isin(input_ids[:, -1].cpu(), ending).nonzero().flatten().tolist()
            if hit:
                texts = tokenizer.batch_decode(input_ids[hit, prompt_len:], skip_special_tokens=True)
                for row, text in zip(hit, texts):
                    done[row] = sql_complete(text)
            return done

    return StopWhenSQLEnds()


def pick_device():
    """The GPU Ray gave this actor (CUDA_VISIBLE_DEVICES), else the CPU."""
    import torch

    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def load_generation_model(cfg: Config, adapter: str | None, device):
    """Base model (quantized as in training) + optional PEFT adapter, in eval mode on device."""
    from sqltrain.model.loading import load_base_model

    model = load_base_model(cfg, device_map={"": device.index} if device.type == "cuda" else None)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        if cfg.quantization.method == "none":
            model = model.merge_and_unload()  # one matmul per layer instead of base + LoRA
    model.config.use_cache = True  # training turns the KV cache off; decoding needs it
    return model.eval()


class SQLGenerator:
    """A model replica: prompts in, SQL out (Ray Data callable class or plain object).

    cfg_dict: the resolved config (`Config.to_dict()`; with an adapter, the adapter's model,
    quantization, linking and prompt sections, see pipeline.generation_config).
    adapter: PEFT adapter dir, or None for the base model.
    """

    def __init__(self, cfg_dict: dict[str, Any], adapter: str | None = None):
        from transformers import GenerationConfig

        from sqltrain.model.loading import load_tokenizer

        self.cfg = config_from_dict(cfg_dict)
        self.device = pick_device()
        self.tokenizer = load_tokenizer(self.cfg.model)
        self.tokenizer.padding_side = "left"
        self.model = load_generation_model(self.cfg, adapter, self.device)
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else []) | {self.tokenizer.eos_token_id}
        self.generation_config = GenerationConfig(
            max_new_tokens=self.cfg.generate.max_new_tokens, do_sample=False, num_beams=1,
            eos_token_id=sorted(eos), pad_token_id=self.tokenizer.pad_token_id,
        )

    def generate(self, prompts: list[str]) -> tuple[list[str], list[int]]:
        """Raw completions of the prompts (in their order) and new-token counts."""
        import torch

        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.device)
        prompt_len = enc["input_ids"].shape[1]
        with torch.inference_mode():
            out = self.model.generate(
                **enc, generation_config=self.generation_config,
                stopping_criteria=[make_stopping_criteria(self.tokenizer, prompt_len)],
            )
        new = out[:, prompt_len:]
        counts = (new != self.tokenizer.pad_token_id).sum(dim=1).tolist()
        return self.tokenizer.batch_decode(new, skip_special_tokens=True), counts

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Ray Data batch (columns index, id, db_id, prompt, ...) -> predictions columns."""
        texts, counts = self.generate([str(p) for p in batch["prompt"]])
        return {
            "index": batch["index"], "id": batch["id"], "db_id": batch["db_id"],
            "sql": [extract_sql(t) for t in texts], "raw": texts,
            "prompt_tokens": batch["prompt_tokens"], "new_tokens": counts,
        }
