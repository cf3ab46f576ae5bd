"""Real transformers in NumPy and their inputs: the MiniLM sentence encoder (:mod:`.minilm`)
and the English corpus it reads (:mod:`.corpus`)."""
