"""The BLS's streamed calls to tensorrt_llm: through the Python backend (`exec`) or over Triton's gRPC endpoint.

Both give the same responses: `array(name)` for what the BLS reads, `tensor(name)` for what it passes through
to the client untouched. The gRPC route (parameter `engine_grpc_url`) avoids the Python backend's decoupled BLS
deadlock (triton_repo/README.md, "Known defects"); `exec` needs nothing but Triton and stays the default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import triton_python_backend_utils as pb_utils


class StepError(Exception):
    """A composing model failed; the message names it."""


class EngineResponse(Protocol):
    """One response of tensorrt_llm."""

    def array(self, name: str) -> np.ndarray | None:
        """An output as numpy, or None when absent."""

    def tensor(self, name: str) -> Any | None:
        """An output as a pb_utils.Tensor to pass on, or None when absent."""


class ExecResponse:
    """A response that came through the Python backend."""

    def __init__(self, response: Any) -> None:
        self.response = response

    def array(self, name: str) -> np.ndarray | None:
        """An output as numpy, or None when absent."""
        tensor = pb_utils.get_output_tensor_by_name(self.response, name)
        return None if tensor is None else tensor.as_numpy()

    def tensor(self, name: str) -> Any | None:
        """The output as it came (no numpy round trip: logits may be BF16 or on GPU)."""
        return pb_utils.get_output_tensor_by_name(self.response, name)


class ExecEngine:
    """tensorrt_llm through `InferenceRequest.exec(decoupled=True)`."""

    def __init__(self, model: str) -> None:
        self.model = model

    def stream(self, inputs: list[Any], outputs: list[str], request_id: str) -> Iterator[EngineResponse]:
        """Send one request; yield its responses, raising StepError on an error response."""
        request = pb_utils.InferenceRequest(
            model_name=self.model, inputs=inputs, requested_output_names=outputs, request_id=request_id
        )
        for response in request.exec(decoupled=True):
            if response.has_error():
                raise StepError(f"{self.model}: {response.error().message()}")
            yield ExecResponse(response)

    def close(self) -> None:
        """Nothing to release."""


class GrpcResponse:
    """A response that came over gRPC."""

    def __init__(self, outputs: dict[str, Any]) -> None:
        self.outputs = outputs

    def array(self, name: str) -> np.ndarray | None:
        """An output as numpy (BF16 as its uint16 bits), or None when absent."""
        output = self.outputs.get(name)
        return None if output is None else output.array

    def tensor(self, name: str) -> Any | None:
        """The output as a pb_utils.Tensor; BF16 through torch's bfloat16, which numpy lacks."""
        output = self.outputs.get(name)
        if output is None:
            return None
        if output.datatype != "BF16":
            return pb_utils.Tensor(name, output.array)
        import torch  # only for BF16 logits; the TensorRT-LLM container has it
        from torch.utils.dlpack import to_dlpack

        bits = torch.from_numpy(output.array.view(np.int16).copy())
        return pb_utils.Tensor.from_dlpack(name, to_dlpack(bits.view(torch.bfloat16).contiguous()))


def host_array(tensor: Any) -> np.ndarray:
    """A pb_utils.Tensor as numpy; one on the GPU (a vision encoder's prompt table) is copied out through torch."""
    if tensor.is_cpu():
        return tensor.as_numpy()
    from torch.utils.dlpack import from_dlpack

    return from_dlpack(tensor.to_dlpack()).cpu().numpy()


class GrpcEngine:
    """tensorrt_llm over Triton's own gRPC endpoint: requests share one stream (bls_grpc.TritonStreams)."""

    def __init__(self, model: str, url: str) -> None:
        import bls_grpc  # tritonclient[grpc] is needed only on this route

        self.model = model
        self.codec = bls_grpc
        self.streams = bls_grpc.TritonStreams(url)

    def stream(self, inputs: list[Any], outputs: list[str], request_id: str) -> Iterator[EngineResponse]:
        """Send one request; yield its responses, raising StepError on an error or a broken stream."""
        arrays = {tensor.name(): host_array(tensor) for tensor in inputs}
        request = self.codec.encode_request(self.model, arrays, outputs, request_id)
        try:
            for response in self.streams.stream(request):
                yield GrpcResponse(self.codec.decode_outputs(response))
        except self.codec.StreamError as exc:
            raise StepError(f"{self.model}: {exc}") from exc

    def close(self) -> None:
        """Close the channel."""
        self.streams.close()
