"""An Ollama Modelfile whose TEMPLATE and SYSTEM render the prompt the model was trained on.

The template is the tokenizer's own chat template rendered once with two sentinel messages (the
system and the user turn, generation prompt opened, as sqltrain.prep.prompts.render_prompt does)
and the sentinels replaced by Ollama's `{{ .System }}` and `{{ .Prompt }}`: Ollama then sends
exactly the training prompt's text, whatever the chat format. The user message is the filled
`prompt.user_template` (schema text + question), as the Modelfile's header says.
"""

from __future__ import annotations

import re

from sqltrain.config import PromptConfig
from sqltrain.export.source import ExportError
from sqltrain.prep.prompts import render_prompt

SYSTEM, PROMPT = "{{ .System }}", "{{ .Prompt }}"
_SENTINELS = {"\x00SYSTEM\x00": SYSTEM, "\x00PROMPT\x00": PROMPT}
_ACTION = re.compile(r"\{\{.*?\}\}", re.S)


def ollama_template(tokenizer) -> str:
    """The Go template of the training prompt, with .System and .Prompt as its only fields."""
    sys_mark, user_mark = _SENTINELS
    text = render_prompt(tokenizer, [{"role": "system", "content": sys_mark}, {"role": "user", "content": user_mark}])
    if text.count(sys_mark) != 1 or text.count(user_mark) != 1:
        raise ExportError("the tokenizer's chat template rewrites the messages' text; it has no Ollama template here")
    text = text.replace("{{", '{{ "{{" }}')  # literal braces in the chat format stay literal in Go
    for mark, field in _SENTINELS.items():
        text = text.replace(mark, field)
    return text


def render_template(template: str, system: str, prompt: str) -> str:
    """What Ollama's text/template makes of an ollama_template (its actions: the two fields and
    quoted literals): for checking an export against render_prompt."""

    def action(m: re.Match) -> str:
        inner = m.group(0)[2:-2].strip()
        if inner == ".System":
            return system
        if inner == ".Prompt":
            return prompt
        if inner.startswith('"') and inner.endswith('"'):
            return inner[1:-1]
        raise ValueError(f"unexpected template action {m.group(0)}")

    return _ACTION.sub(action, template)


def _quoted(text: str, field: str) -> str:
    if '"""' in text:
        raise ExportError(f'{field} contains """, which a Modelfile cannot quote')
    return f'"""{text}"""'


def modelfile(gguf_name: str, template: str, prompt: PromptConfig, stops: list[str], num_ctx: int) -> str:
    """The Modelfile text: FROM the GGUF beside it, the training prompt, greedy decoding."""
    header = [
        "# Written by `sqltrain export --format ollama`. Serve it with:  ollama create <name> -f Modelfile",
        "# Send as the user message the training prompt's user turn, prompt.user_template:",
        *(f"#   {line}".rstrip() for line in prompt.user_template.splitlines()),
        "# with {schema} the database schema as sqltrain serializes it and {question} the question.",
    ]
    lines = [
        f"FROM ./{gguf_name}",
        f"TEMPLATE {_quoted(template, 'the chat template')}",
        f"SYSTEM {_quoted(prompt.system, 'prompt.system')}",
        "PARAMETER temperature 0",
        f"PARAMETER num_ctx {num_ctx}",
        *(f'PARAMETER stop "{s}"' for s in stops),
    ]
    return "\n".join(header + [""] + lines) + "\n"


def stop_tokens(tokenizer, generation_config) -> list[str]:
    """The texts of the end-of-turn tokens (the tokenizer's EOS and the generation config's)."""
    ids = generation_config.eos_token_id if generation_config is not None else None
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else []) | {tokenizer.eos_token_id}
    return sorted({tokenizer.convert_ids_to_tokens(i) for i in ids if i is not None})
