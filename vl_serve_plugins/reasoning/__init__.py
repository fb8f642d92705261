"""Reasoning parsers for ERNIE-4.5-VL and Qwen-VL models."""
