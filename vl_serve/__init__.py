"""vl-serve: serve vision-language models through vLLM's OpenAI-compatible server."""

__version__ = "0.1.0"
