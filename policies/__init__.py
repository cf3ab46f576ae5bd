"""Attention policies that run on the models of :mod:`psa.models`, each reporting the K/V
rows it reads: :mod:`.encoder` for the MiniLM encoder, :mod:`.decode` for the Llama decoder
(decode steps with a KV cache)."""
