"""ERNIE-4.5-VL on vLLM with transformers' native classes (no remote code)."""
