"""Deployment helpers: the container health probe and the TensorRT-LLM model-repository filler."""
