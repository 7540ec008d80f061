"""The prompt: one code path for training records and for generation.

A chat of two messages, system (``prompt.system``) and user (``prompt.user_template`` with
the schema text and the question), rendered with the tokenizer's chat template and the
assistant turn opened. The assistant's answer, the training target, is the SQL alone,
whitespace-normalized, followed by the end-of-turn (EOS) token.
"""

from __future__ import annotations

import re

from sqltrain.config import PromptConfig


class PromptError(ValueError):
    """The prompt section of the config cannot be rendered; the message names the field."""


def build_messages(schema_text: str, question: str, prompt_cfg: PromptConfig) -> list[dict]:
    """System + user messages for one question over one (serialized) schema."""
    try:
        user = prompt_cfg.user_template.format(schema=schema_text, question=question)
    except (KeyError, IndexError, ValueError) as e:
        raise PromptError(
            f"prompt.user_template: cannot fill it ({type(e).__name__}: {e}); "
            "it may use only {schema} and {question} (write other braces as {{ }})"
        ) from None
    return [{"role": "system", "content": prompt_cfg.system}, {"role": "user", "content": user}]


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The prompt text up to where the assistant's SQL starts.

    Tokenizers without a chat template (base models) get the messages joined by blank lines.
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n"


# String literals (single or double quoted, doubled quotes inside) are kept verbatim.
_QUOTED = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`)""")


def normalize_sql(sql: str) -> str:
    """Gold SQL as the model should write it: whitespace runs outside literals collapsed,
    no trailing semicolon ("T1.a  =  T2.b ;" -> "T1.a = T2.b")."""
    parts = _QUOTED.split(sql.strip())
    text = "".join(p if i % 2 else re.sub(r"\s+", " ", p) for i, p in enumerate(parts))
    return text.strip().rstrip(";").rstrip()


def target_ids(tokenizer, sql: str) -> list[int]:
    """Token ids of the training target: the normalized SQL, then EOS (it ends the turn)."""
    ids = tokenizer(normalize_sql(sql), add_special_tokens=False)["input_ids"]
    return list(ids) + [tokenizer.eos_token_id]
