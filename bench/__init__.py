"""Benchmarks of the gateway against a direct Triton client and LiteLLM's proxy, on the same synthetic Triton."""
