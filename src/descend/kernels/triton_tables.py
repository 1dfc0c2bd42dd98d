"""What the Triton executor keeps on the device for an address table: the table's addresses
and the chunk lists its launches walk (see :mod:`descend.kernels.triton`)."""

from __future__ import annotations

import numpy as np
import torch

from descend.kernels.table import Int64Array, TensorTable


def chunk_list(sizes: Int64Array, indices: Int64Array | None, chunk: int) -> Int64Array:
    """``(tensor, start, stop)`` rows cutting the tensors at ``indices`` (all if None) into
    chunks of at most ``chunk`` elements, each starting at a multiple of ``chunk``."""
    selected = np.arange(len(sizes), dtype=np.int64) if indices is None else indices
    counts = -(-sizes[selected] // chunk)
    tensor = np.repeat(selected, counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    start = (np.arange(len(tensor), dtype=np.int64) - first) * chunk
    stop = np.minimum(start + chunk, sizes[tensor])
    return np.ascontiguousarray(np.stack([tensor, start, stop], axis=1), dtype=np.int64)


def _to_device(array: Int64Array, device: torch.device) -> torch.Tensor:
    """``array`` (which the caller never changes afterwards) as a tensor on ``device``.

    On a GPU: one non-blocking copy from pinned memory, on the current stream. The pinned
    buffer comes from torch's caching host allocator, which does not hand it out again before
    the copy has run, so the host never waits for the GPU.
    """
    host = torch.from_numpy(array)
    if device.type == "cpu":
        return host
    pinned = torch.empty(host.shape, dtype=host.dtype, pin_memory=True)
    pinned.copy_(host)
    return pinned.to(device, non_blocking=True)


class DeviceTable:
    """What the Triton executor keeps of one address table, on the table's device.

    ``addresses`` is the device copy of the table's address rows, made from ``uploaded`` (a host
    snapshot); ``aligned`` says whether every address in it is a multiple of 16 bytes; chunk
    lists are kept by the set of tensors they cover. ``stream`` is the CUDA stream of the last
    launch: the device tensors are made on the stream current when they are needed, and one
    read by a kernel on another stream is recorded on it (``Tensor.record_stream``), so that
    torch's allocator never hands its memory out while that kernel may still read it.
    """

    #: Chunk lists kept per table (one per distinct subset of tensors stepped).
    MAX_CHUNK_LISTS = 16

    def __init__(self, table: TensorTable) -> None:
        self.device = table.device
        self.count = table.addresses.shape[1]
        self.uploaded: Int64Array | None = None
        self.addresses: torch.Tensor | None = None
        self.aligned = False
        #: (chunk, the tensor positions' bytes or None for all) -> (chunk list, its length).
        self.chunk_lists: dict[tuple[int, bytes | None], tuple[torch.Tensor, int]] = {}
        self.stream: torch.cuda.Stream | None = None
        #: The tensors' sizes on the device (a cautious step's scales need them), made once.
        self.sizes: torch.Tensor | None = None

    def device_sizes(self, table: TensorTable) -> torch.Tensor:
        """The table's tensor sizes (int64) on its device, uploaded on first use."""
        if self.sizes is None:
            self.sizes = _to_device(table.sizes.copy(), self.device)
        return self.sizes

    def refresh(self, table: TensorTable) -> None:
        """Upload the table's addresses if they differ from the last upload."""
        if self.uploaded is not None and np.array_equal(self.uploaded, table.addresses):
            return
        snapshot = table.addresses.copy()
        self.addresses = _to_device(snapshot, self.device)
        self.uploaded = snapshot
        self.aligned = not bool((snapshot & 15).any())

    def chunks(
        self, table: TensorTable, indices: Int64Array | None, chunk: int
    ) -> tuple[torch.Tensor, int]:
        """The chunk list (on the device) for the tensors at ``indices``, and its length."""
        key = (chunk, None if indices is None else indices.tobytes())
        found = self.chunk_lists.get(key)
        if found is None:
            if len(self.chunk_lists) >= self.MAX_CHUNK_LISTS:
                self.chunk_lists.clear()
            rows = chunk_list(table.sizes, indices, chunk)
            found = self.chunk_lists[key] = (_to_device(rows, self.device), len(rows))
        return found

    def use_on_current_stream(self) -> None:
        """Record the device tensors on the current stream if it changed since the last launch
        (CUDA only)."""
        stream = torch.cuda.current_stream(self.device)
        if stream != self.stream:
            kept = [t for t in (self.addresses, self.sizes) if t is not None]
            for tensor in (*kept, *(c for c, _ in self.chunk_lists.values())):
                tensor.record_stream(stream)
            self.stream = stream


__all__ = ["DeviceTable", "chunk_list"]
