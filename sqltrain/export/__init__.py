"""`sqltrain export`: a trained adapter as a model other tools serve.

- merged: the base with the LoRA weights merged in, bf16, as a standard Hugging Face dir
  (safetensors + tokenizer + chat template): transformers, vLLM, TGI load it.
- gguf: the merged model as one GGUF file (f16 or q8_0) written with the `gguf` library
  (llama.cpp's own Python package): llama.cpp, LM Studio, Ollama.
- ollama: the GGUF plus a Modelfile whose template and system prompt render the training prompt.

Modules: `source` (read and check the adapter dir and its base), `merge`, `to_gguf`, `ollama`,
`run` (`run_export`, what the CLI verb calls), `command` (the verb).
"""
