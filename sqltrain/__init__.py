"""sqltrain: QLoRA fine-tuning of open LLMs for text-to-SQL on Ray, scored by execution."""

__version__ = "0.1.0"
