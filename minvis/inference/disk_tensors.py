"""A list of same-shape tensors kept in a temporary file instead of in memory."""

import tempfile
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

__all__ = ["DiskTensorList"]


class DiskTensorList:
    """Append-only sequence of tensors of one shape and dtype, stored in an anonymous file.

    Memory holds one tensor at a time, whatever the length; the file is deleted when the
    list is garbage-collected or :meth:`close`\\ d. Values round-trip exactly; tensors come
    back on the CPU.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="minvis_")
        self._shape: torch.Size | None = None
        self._dtype: torch.dtype | None = None
        self._length = 0

    def append(self, tensor: Tensor) -> None:
        if self._shape is None:
            self._shape, self._dtype = tensor.shape, tensor.dtype
        elif (tensor.shape, tensor.dtype) != (self._shape, self._dtype):
            raise ValueError(
                f"expected a {self._dtype} tensor of shape {tuple(self._shape)}, "
                f"got {tensor.dtype} {tuple(tensor.shape)}"
            )
        self._file.seek(0, 2)  # reads may have moved the position
        self._file.write(tensor.detach().cpu().contiguous().numpy().tobytes())
        self._length += 1

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Tensor]:
        if self._shape is None:
            return
        template = torch.empty(self._shape, dtype=self._dtype)
        nbytes = template.numel() * template.element_size()
        dtype = template.numpy().dtype
        for index in range(self._length):
            self._file.seek(index * nbytes)
            buffer = bytearray(nbytes)
            self._file.readinto(buffer)
            yield torch.from_numpy(np.frombuffer(buffer, dtype=dtype).reshape(tuple(self._shape)))

    def close(self) -> None:
        self._file.close()
