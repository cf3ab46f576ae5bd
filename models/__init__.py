"""Real transformers in NumPy and their inputs: the MiniLM sentence encoder (:mod:`.minilm`)
and the English corpus it reads (:mod:`.corpus`); the SmolLM2 decoder (:mod:`.llama`, loaded
by :mod:`.gguf_loader`, tokenized by :mod:`.bpe`) and its prose corpus (:mod:`.prose`)."""
