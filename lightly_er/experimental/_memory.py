"""The entropy memory of the ER losses: past (detached) samples for the entropy term.

Small batches estimate the entropy from few samples. A memory keeps the most recent
``size`` samples of earlier steps and adds them to the estimate: on the sphere as
extra centers of the kernel density (extra reference points of the nearest-neighbor
search, extra rows of the covariance), on a discrete support as extra rows of the
marginal. MoCo's bank is such a memory for InfoNCE's density estimate. The samples
come from earlier parameters, so the estimate is a cross-entropy between the
current distribution and a mixture with the stale ones, biased upwards (Gibbs'
inequality); docs/objectives.md discusses the price.

Rows join the memory once the loss that saw them has been backpropagated (a hook on
the loss's entropy term), not when they are computed: a step that calls the loss
twice on two views of the same images (BYOL's symmetric loss) then never sees the
other view of a sample as a center of its own entropy, which would push the two
views apart. A call without gradient (evaluation) adds nothing. With
``gather_distributed`` the rows of all processes are stored, so every process holds
the same memory. The memory is a set of buffers, saved in the state dict; its size
in the feature dimension is set by the first rows stored (or given).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor, nn

from lightly_er.utils.checks import check_int


class SphereMemory(nn.Module):
    """A ring buffer of the last ``size`` unit-norm rows, without gradient.

    Attributes:
        size: How many rows it holds at most.
        rows: The stored rows, shape (size, dim) (dim 0 until the first rows).
        pointer: Where the next row goes.
        count: How many slots hold a row.
    """

    rows: Tensor
    pointer: Tensor
    count: Tensor

    def __init__(self, size: int, dim: Optional[int] = None) -> None:
        super().__init__()
        check_int(size, "entropy_memory_size", 1)
        if dim is not None:
            check_int(dim, "the memory's dim", 1)
        self.size = int(size)
        self.register_buffer("rows", torch.zeros(self.size, dim or 0))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self._pending: List[Tensor] = []

    def centers(self, like: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """(rows, which of them are filled) for an estimate on rows like ``like``."""
        if self.rows.shape[1] == 0:
            return None, None
        if self.rows.shape[1] != like.shape[1]:
            raise ValueError(
                f"the entropy memory holds rows of dim {self.rows.shape[1]}, got "
                f"embeddings of shape {tuple(like.shape)}"
            )
        valid = torch.arange(self.size, device=self.rows.device) < self.count
        return self.rows.to(like.dtype), valid

    def stage(self, rows: Tensor, output: Tensor) -> None:
        """Keeps rows until output (a term of the loss) is backpropagated."""
        stage(self, rows.detach(), output)

    @torch.no_grad()
    def commit(self) -> None:
        """Stores the staged rows (oldest first), overwriting the oldest slots."""
        if not self._pending:
            return
        rows = torch.cat(self._pending)
        self._pending.clear()
        if self.rows.shape[1] == 0:
            dtype = torch.promote_types(rows.dtype, torch.float32)
            self.rows = rows.new_zeros((self.size, rows.shape[1]), dtype=dtype)
        rows = rows[-self.size :]
        n = rows.shape[0]
        index = (self.pointer + torch.arange(n, device=rows.device)) % self.size
        self.rows.index_copy_(0, index, rows.to(self.rows))
        self.pointer.copy_((self.pointer + n) % self.size)
        self.count.copy_((self.count + n).clamp(max=self.size))

    def _load_from_state_dict(
        self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # A memory that has not stored anything yet takes the saved rows' dim.
        saved = state_dict.get(prefix + "rows")
        if saved is not None and self.rows.shape[1] == 0:
            self.rows = self.rows.new_zeros(saved.shape, dtype=saved.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.rows.shape[1]}"


class DiscreteMemory(nn.Module):
    """The probability rows of the last calls, kept as one row sum per call.

    The marginal of a discrete support is a mean of rows, so a call's rows are
    stored as their sum and their number: ``size`` rows of K classes cost
    size / batch rows of memory, not size (DINO: K = 65,536).

    Attributes:
        size: How many rows it holds at most (``size // rows per call`` calls).
        sums: Row sums of the stored calls, shape (slots, K) (0 x 0 until the first).
        counts: Rows behind each sum (0: an empty slot).
        pointer: The next slot.
    """

    sums: Tensor
    counts: Tensor
    pointer: Tensor

    def __init__(self, size: int) -> None:
        super().__init__()
        check_int(size, "entropy_memory_size", 1)
        self.size = int(size)
        self.register_buffer("sums", torch.zeros(0, 0))
        self.register_buffer("counts", torch.zeros(0, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self._pending: List[Tuple[Tensor, int]] = []

    def totals(self, like: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """(sum of the stored rows (K,), their number) or (None, None) when empty."""
        if self.sums.shape[0] == 0:
            return None, None
        if self.sums.shape[1] != like.shape[-1]:
            raise ValueError(
                f"the entropy memory holds rows of {self.sums.shape[1]} classes, got "
                f"outputs of shape {tuple(like.shape)}"
            )
        return self.sums.sum(dim=0).to(like.dtype), self.counts.sum()

    def stage(self, row_sum: Tensor, count: int, output: Tensor) -> None:
        """Keeps one call's row sum until output is backpropagated."""
        stage(self, (row_sum.detach(), count), output)

    @torch.no_grad()
    def commit(self) -> None:
        """Stores the staged calls, one slot each, overwriting the oldest."""
        pending, self._pending = self._pending, []
        for row_sum, count in pending:
            if self.sums.shape[0] == 0:
                slots = max(1, self.size // max(count, 1))
                dtype = torch.promote_types(row_sum.dtype, torch.float32)
                self.sums = row_sum.new_zeros((slots, row_sum.shape[0]), dtype=dtype)
                self.counts = self.counts.new_zeros(slots)
            slot = self.pointer.reshape(1)
            self.sums.index_copy_(0, slot, row_sum.to(self.sums).unsqueeze(0))
            self.counts.index_fill_(0, slot, count)
            self.pointer.copy_((self.pointer + 1) % self.sums.shape[0])

    def _load_from_state_dict(
        self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        for name in ("sums", "counts"):
            saved = state_dict.get(prefix + name)
            own = getattr(self, name)
            if saved is not None and own.numel() == 0 and saved.shape != own.shape:
                setattr(self, name, own.new_zeros(saved.shape, dtype=saved.dtype))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"size={self.size}, slots={self.sums.shape[0]}"


def stage(memory: Any, item: Any, output: Tensor) -> None:
    """Queues item in memory._pending; memory.commit() runs when output's gradient does.

    Only a call whose output carries gradient (training) stages anything. Every
    staging call hooks its own output; the first hook that runs commits all that is
    pending, so a step with two calls commits both after its backward.
    """
    if not output.requires_grad:
        return
    memory._pending.append(item)
    # A memory that is never backpropagated must not grow without bound.
    del memory._pending[: -max(memory.size, 1)]

    def commit_on_backward(grad: Tensor) -> None:
        memory.commit()

    output.register_hook(commit_on_backward)  # type: ignore[no-untyped-call]
