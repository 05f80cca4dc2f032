"""trtllm-gateway: an OpenAI-compatible HTTP gateway in front of Triton serving TensorRT-LLM."""

__version__ = "0.1.0"
