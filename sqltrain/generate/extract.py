"""Pull one SQL statement out of free-form model output.

Instruction-tuned models wrap their answer in many ways: a ```sql fence, a "SQL:" prefix, a
sentence before or an explanation after, several statements, leftover chat-template tokens.
`extract_sql` undoes all of them and returns the first statement without its ';'.
`sql_complete` tells a decoder that the answer has ended so it can stop generating.
Statement splitting uses sqlglot's tokenizer so that ';' inside strings or comments is ignored.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType

# Special tokens of common chat templates (ChatML, Llama 2/3, Mistral, Phi, Gemma, GPT-2).
# An end-of-turn token ends the answer; other template tokens are just removed.
_END_TOKENS = re.compile(r"<\|im_end\|>|<\|endoftext\|>|<\|eot_id\|>|<\|end\|>|<end_of_turn>|</s>")
_CHAT_TOKENS = re.compile(
    r"<\|im_start\|>(?:assistant|user|system)?|<\|start_header_id\|>\w*<\|end_header_id\|>|<\|assistant\|>"
    r"|<\|user\|>|<start_of_turn>(?:model|user)?|<s>|\[/?INST\]|<pad>"
)
# A role line left behind when special tokens were skipped while decoding ("assistant\n...").
_ROLE_LINE = re.compile(r"^\s*(?:assistant|model|gpt|bot)\s*:?\s*\n", re.IGNORECASE)
# A following turn the model hallucinated; everything from here on is not the answer.
_NEXT_TURN = re.compile(r"\n\s*(?:--\s*)?(?:user|human|question|###\s*\w+)\s*:", re.IGNORECASE)
_FENCE = re.compile(
    r"```[ \t]*(?:sqlite3?|sql|postgresql|postgres|mysql)?[ \t]*\n?(.*?)(?:```|$)", re.IGNORECASE | re.DOTALL
)
_FENCE_MARK = re.compile(r"```\w*")
_STATEMENT_START = re.compile(r"\s*(?:CREATE|INSERT|UPDATE|DELETE|DROP|ALTER|PRAGMA|WITH)\b", re.IGNORECASE)
_PREFIX = re.compile(
    r"^\s*(?:--\s*)?(?:sqlite\s+|sql\s+)?(?:sql|sqlite|query|answer|output|response)(?:\s+query)?\s*:\s*",
    re.IGNORECASE,
)
_SQL_START = re.compile(r"\bSELECT\b", re.IGNORECASE)
_CTE_START = re.compile(r"\bWITH\s+(?:RECURSIVE\s+)?[\w\"`\[\]]+\s*(?:\([^)]*\))?\s*AS\s*\(", re.IGNORECASE)
# Lines that begin an explanation after the query.
_PROSE_MARKER = re.compile(
    r"^\s*(?:(?:explanation|note|notes|output|result|results|answer)\s*:|(?:this|the)\s+(?:query|sql|statement)\b"
    r"|here\s+is\b|here's\b|in\s+this\b|#+\s)",
    re.IGNORECASE,
)
_SQL_WORDS = {
    "select", "from", "where", "join", "inner", "left", "right", "outer", "cross", "natural", "on",
    "and", "or", "not", "group", "order", "having", "limit", "offset", "union", "intersect",
    "except", "as", "with", "case", "when", "then", "else", "end", "in", "exists", "between",
    "like", "is", "null", "distinct", "all", "by", "asc", "desc", "count", "sum", "avg", "min", "max",
}


def extract_sql(text: str) -> str:
    """The first SQL statement in `text`, stripped of fences, prefixes, prose and ';'."""
    text = _strip_chat(text)
    fenced = _FENCE.search(text)
    if fenced and fenced.group(1).strip():
        text = fenced.group(1)
    text = _from_sql_start(text)
    text = first_statement(text)
    text = _cut_trailing_prose(text)
    return text.strip().rstrip(";").strip()


def _strip_chat(text: str) -> str:
    ends = [m.start() for m in _END_TOKENS.finditer(text) if text[: m.start()].strip()]
    text = _END_TOKENS.sub("", text[: ends[0]] if ends else text)
    text = _CHAT_TOKENS.sub("\n", text)
    text = _ROLE_LINE.sub("", text)
    turn = _NEXT_TURN.search(text)
    return text[: turn.start()] if turn else text


def _from_sql_start(text: str) -> str:
    """Drop a leading "SQL:"-style prefix and any sentence before the query's first keyword."""
    text = _PREFIX.sub("", text, count=1)
    select = _SQL_START.search(text)
    if select is None:
        return text
    cte = _CTE_START.search(text, 0, select.start() + 1)
    return text[(cte or select).start():]


def first_statement(text: str) -> str:
    """Text before the first ';' that is not inside a string or comment."""
    try:
        end = _statement_end(text)
    except TokenError:
        # Unterminated string or similar: fall back to a plain split, best effort.
        return text.split(";", 1)[0]
    return text if end is None else text[:end]


def _statement_end(text: str) -> int | None:
    """Offset of the first statement-ending ';', None if there is none; TokenError if the
    text does not tokenize (e.g. a string literal still open)."""
    for tok in sqlglot.tokenize(text, read="sqlite"):
        if tok.token_type == TokenType.SEMICOLON:
            return tok.start
    return None


def _cut_trailing_prose(text: str) -> str:
    """Stop at a blank line or at a line that reads like an explanation, not like SQL."""
    kept: list[str] = []
    for line in text.strip().splitlines():
        if not line.strip():
            if kept:
                break
            continue
        if kept and _is_prose(line):
            break
        kept.append(line)
    return "\n".join(kept)


def _is_prose(line: str) -> bool:
    if line.lstrip().startswith("```") or _PROSE_MARKER.match(line):
        return True
    words = line.split()
    # A sentence starts with a capitalized non-SQL word and has several plain lowercase words;
    # a capitalized column list ("Name, Country, Age") has none.
    first = re.sub(r"\W", "", words[0])
    plain = [w for w in (w.strip(",.:;!?") for w in words[1:]) if w.isalpha() and w.islower()]
    return (
        first[:1].isupper()
        and not first.isupper()
        and first.lower() not in _SQL_WORDS
        and sum(w not in _SQL_WORDS for w in plain) >= 3
    )


def sql_complete(text: str) -> bool:
    """True once generated text holds a finished answer: after SELECT, a ';', a closing code
    fence or a blank line; in text that starts as SQL (e.g. a "CREATE TABLE ...);" echo of
    the schema), a ';'. Opening fences and text before the query do not count, so a model that
    starts with "```sql" or "Here is the query:" keeps going."""
    text = _strip_chat(text)
    start = _SQL_START.search(text)
    if start is not None:
        tail = text[start.end():]
        if "```" in tail or "\n\n" in tail.replace("\r", ""):
            return True
        text = tail
    elif not _STATEMENT_START.match(_PREFIX.sub("", _FENCE_MARK.sub("\n", text), count=1)):
        return False
    try:
        return _statement_end(_FENCE_MARK.sub("\n", text)) is not None
    except TokenError:
        return False  # a string literal is still open, so a ';' so far is inside it
