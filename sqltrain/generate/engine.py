"""The hf engine: one transformers model replica that turns batches of prompts into SQL.

`SQLGenerator` is a Ray Data callable class (the pipeline wraps it in
`generate.replica.GenerationReplica`, which picks the engine): Ray builds it once per actor,
so the model loads once per replica and stays on its GPU (or the CPU) for every batch. It is
also usable in-process, which is how tests and the throughput benchmark's baseline drive it.

Decoding is greedy on left-padded batches (decoder-only models continue from the last
position, so padding must sit on the left). A batch stops as soon as every row has finished,
where a row finishes at EOS or when its text holds a complete answer (`sql_complete`: a ';',
a closing code fence or a blank line after the query) — models that keep talking after the
SQL would otherwise burn `max_new_tokens` on every row of the batch. With
generate.temperature > 0 it samples generate.num_candidates answers per prompt instead
(`num_return_sequences`), scored afterwards by one teacher-forced pass.
"""

from __future__ import annotations

from typing import Any

from sqltrain.config import Config, config_from_dict
from sqltrain.generate.candidates import Completion, adapter_list, candidates, prediction_columns, row_slots
from sqltrain.generate.extract import sql_complete
from sqltrain.generate.stopping import ending_token_ids

LOGPROB_ROWS = 8  # sequences scored per forward pass: logits memory is rows x new tokens x vocab


def make_stopping_criteria(tokenizer, prompt_len: int):
    """A per-row StoppingCriteria: True for rows whose new text is a finished answer."""
    import torch
    from transformers import StoppingCriteria

    ending = torch.tensor(sorted(ending_token_ids(tokenizer)))

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


def load_generation_model(cfg: Config, adapters: list[str], device):
    """Base model (quantized as in training) + the PEFT adapters (slot i named `slot_name(i)`),
    in eval mode on device. One adapter on an unquantized model is merged (one matmul per layer
    instead of base + LoRA); several stay separate, switched per group of rows."""
    from sqltrain.model.loading import load_base_model

    model = load_base_model(cfg, device_map={"": device.index} if device.type == "cuda" else None)
    if adapters:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapters[0], adapter_name=slot_name(0))
        for i, adapter in enumerate(adapters[1:], start=1):
            model.load_adapter(adapter, adapter_name=slot_name(i))
        if len(adapters) == 1 and cfg.quantization.method == "none":
            model = model.merge_and_unload()
    model.config.use_cache = True  # training turns the KV cache off; decoding needs it
    return model.eval()


def slot_name(slot: int) -> str:
    return f"slot{slot}"


class SQLGenerator:
    """A model replica: prompts in, SQL out (Ray Data callable class or plain object).

    cfg_dict: the resolved config (`Config.to_dict()`; with an adapter, the adapter's model,
    quantization, linking and prompt sections, see pipeline.generation_config).
    adapter: PEFT adapter dir, None for the base model, or a list of adapter dirs trained with
    the same prompt setup (rows then name theirs in the `adapter_slot` column).
    """

    engine = "hf"

    def __init__(self, cfg_dict: dict[str, Any], adapter: str | list[str] | None = None):
        from sqltrain.model.loading import load_tokenizer

        self.cfg = config_from_dict(cfg_dict)
        self.device = pick_device()
        self.tokenizer = load_tokenizer(self.cfg.model)
        self.tokenizer.padding_side = "left"
        self.adapters = adapter_list(adapter)
        self.model = load_generation_model(self.cfg, self.adapters, self.device)
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos_ids = eos | {self.tokenizer.eos_token_id}
        self.generation_config = hf_generation_config(self.cfg, sorted(self.eos_ids), self.tokenizer.pad_token_id)

    def _decode(self, prompts: list[str]):
        """(encoded prompts, whole output ids, prompt width): num_candidates rows per prompt."""
        import torch

        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.device)
        prompt_len = enc["input_ids"].shape[1]
        if self.generation_config.do_sample:
            torch.manual_seed(self.cfg.generate.seed)  # same config, same batch -> same samples
        with torch.inference_mode():
            out = self.model.generate(
                **enc, generation_config=self.generation_config,
                stopping_criteria=[make_stopping_criteria(self.tokenizer, prompt_len)],
            )
        return enc, out, prompt_len

    def generate(self, prompts: list[str]) -> tuple[list[str], list[int]]:
        """Raw completions of the prompts (in their order; num_candidates consecutive rows per
        prompt) and new-token counts."""
        _, out, prompt_len = self._decode(prompts)
        new = out[:, prompt_len:]
        counts = (new != self.tokenizer.pad_token_id).sum(dim=1).tolist()
        return self.tokenizer.batch_decode(new, skip_special_tokens=True), counts

    def completions(self, prompts: list[str]) -> tuple[list[list[Completion]], list[int]]:
        """Per prompt: its num_candidates completions (text, token ids, token log-probabilities
        when there are several), and the new tokens generated for it."""
        enc, out, prompt_len = self._decode(prompts)
        n = self.cfg.generate.num_candidates
        new = out[:, prompt_len:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        counts = (new != self.tokenizer.pad_token_id).sum(dim=1).tolist()
        ids = new.tolist()
        lps = self.token_logprobs(enc, out, prompt_len) if n > 1 else [None] * len(ids)
        rows = list(zip(texts, ids, lps))
        return ([rows[p * n:(p + 1) * n] for p in range(len(prompts))],
                [sum(counts[p * n:(p + 1) * n]) for p in range(len(prompts))])

    def token_logprobs(self, enc, out, prompt_len: int) -> list[list[float]]:
        """Log-probability of every generated token under the model's raw distribution, by one
        teacher-forced forward pass over prompt + output (sampling warped the distribution)."""
        import torch

        n = out.shape[0] // enc["input_ids"].shape[0]
        new = out[:, prompt_len:]
        mask = torch.cat([enc["attention_mask"].repeat_interleave(n, dim=0), torch.ones_like(new)], dim=1)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # left padding: count real tokens only
        rows: list[list[float]] = []
        with torch.inference_mode():
            for s in range(0, out.shape[0], LOGPROB_ROWS):
                part = slice(s, s + LOGPROB_ROWS)
                logits = self.model(input_ids=out[part], attention_mask=mask[part], position_ids=positions[part],
                                    use_cache=False, logits_to_keep=new.shape[1] + 1).logits[:, :-1]
                lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, new[part, :, None]).squeeze(-1)
                rows += lp.tolist()
        return rows

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Ray Data batch (columns index, id, db_id, prompt, ...) -> predictions columns."""
        prompts = [str(p) for p in batch["prompt"]]
        slots = row_slots(batch, self.adapters)
        per_prompt: list = [None] * len(prompts)
        counts: list = [0] * len(prompts)
        for slot in sorted(set(slots)):  # one adapter at a time: PEFT applies one per forward pass
            rows = [i for i, s in enumerate(slots) if s == slot]
            if len(self.adapters) > 1:
                self.model.set_adapter(slot_name(slot))
            done, n = self.completions([prompts[i] for i in rows])
            for i, c, k in zip(rows, done, n):
                per_prompt[i], counts[i] = c, k
        stop = self.eos_ids | {self.tokenizer.pad_token_id}
        return prediction_columns(batch, [candidates(c, stop) for c in per_prompt], counts)


def hf_generation_config(cfg: Config, eos_ids: list[int], pad_id: int):
    """Greedy decoding, or sampling num_candidates answers per prompt when temperature > 0."""
    from transformers import GenerationConfig

    gen = cfg.generate
    common = dict(max_new_tokens=gen.max_new_tokens, num_beams=1, eos_token_id=eos_ids, pad_token_id=pad_id)
    if gen.temperature == 0:
        return GenerationConfig(do_sample=False, **common)
    return GenerationConfig(do_sample=True, temperature=gen.temperature, top_p=gen.top_p,
                            num_return_sequences=gen.num_candidates, **common)
