"""What runs in front of vLLM: the ASGI middleware, request dialect, response rewrite, errors."""
