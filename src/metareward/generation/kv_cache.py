"""A KV cache that keeps room for the tokens still to come, so a decoding step writes its keys and values in place.

transformers' DynamicCache appends a step by concatenating: every step copies every row's whole cache, per layer.
For the judge's and meta-judge's long prompts (300 to 700 tokens, 48 rows) that copy took about a fifth of a
decoding step here, more than the attention that reads the cache. `RoomyCache` allocates each layer's keys and
values with `room` free positions past the prompt (the most tokens a request can still add), writes each step into
them and hands the attention a view of the filled part: the same numbers, without the copy. It is used where the
sampler creates a cache (generation/sampler.py); a step that does not fit grows the buffer, so `room` is a size
hint, never a limit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class RoomyLayer(DynamicLayer):
    """One layer's keys and values in buffers of shape (rows, heads, capacity, dim); `keys` and `values` are views
    of the first `length` positions, as a DynamicLayer's tensors would be."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room
        self.length = 0
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, end = self.length, self.length + key_states.shape[-2]
        if self._keys is None or end > self._keys.shape[-2]:
            self._keys = self._moved(self._keys, key_states, end + self.room)
            self._values = self._moved(self._values, value_states, end + self.room)
        self._keys[:, :, start:end] = key_states
        self._values[:, :, start:end] = value_states
        self.length = end
        return self._show()

    def _moved(self, old: torch.Tensor | None, new: torch.Tensor, capacity: int) -> torch.Tensor:
        """A buffer of `capacity` positions holding what `old` held."""
        buffer = new.new_empty((*new.shape[:2], capacity, new.shape[-1]))
        if old is not None and self.length:
            buffer[:, :, : self.length] = old[:, :, : self.length]
        return buffer

    def _show(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys = self._keys[:, :, : self.length]  # type: ignore[index]
        self.values = self._values[:, :, : self.length]  # type: ignore[index]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def reset(self) -> None:
        self.length = 0
        self._keys = self._values = None
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes the number of tokens to remove as a negative count, got {tokens_to_remove}")
        if self.length:
            self.length = max(0, self.length + tokens_to_remove)
            self._show()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)  # type: ignore[union-attr]
            self._values = self._values.repeat_interleave(repeats, dim=0)  # type: ignore[union-attr]
            self._show()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.length:
            self._keys = self._keys[indices]  # type: ignore[index]
            self._values = self._values[indices]  # type: ignore[index]
            self._show()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx.to(self.device))


class RoomyCache(DynamicCache):
    """A DynamicCache whose layers are RoomyLayers with `room` free positions past what they hold."""

    def __init__(self, room: int) -> None:
        Cache.__init__(self, layer_class_to_replicate=functools.partial(RoomyLayer, room))  # type: ignore[arg-type]


@dataclass
class PromptPart:
    """One stretch of the prompts' cache, held once for every batch row that reads it: `keys` and `values` per layer
    (rows, kv_heads, length, dim), `mask` (rows, 1, 1, length), additive (0 or -inf: left padding), and `owner`,
    which part row each batch row reads (-1: none, a row whose part is empty)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor
    owner: torch.Tensor
    slots: torch.Tensor = field(init=False)  # (part rows, width): the batch rows reading each, padded with `rows`
    where: torch.Tensor = field(init=False)  # (rows,): each batch row's place in `slots`, flattened (last: none)

    def __post_init__(self) -> None:
        rows, parts = len(self.owner), self.mask.shape[0]
        reading = self.owner >= 0
        counts = torch.bincount(self.owner[reading], minlength=parts)
        width = max(1, int(counts.max())) if parts else 1
        order = torch.argsort(torch.where(reading, self.owner, parts), stable=True)
        starts = torch.cumsum(counts, 0) - counts
        sorted_owner = self.owner[order]
        kept = sorted_owner >= 0
        rank = torch.arange(rows, device=self.owner.device)[kept] - starts[sorted_owner[kept]]
        self.slots = torch.full((parts, width), rows, dtype=torch.long, device=self.owner.device)
        self.slots[sorted_owner[kept], rank] = order[kept]
        self.where = torch.full((rows,), parts * width, dtype=torch.long, device=self.owner.device)
        self.where[order[kept]] = sorted_owner[kept] * width + rank

    def selected(self, index: torch.Tensor) -> PromptPart:
        return PromptPart(self.keys, self.values, self.mask, self.owner[index])


@dataclass
class SharedPrompt:
    """The prompts of a decoding batch, held as parts that many rows share (the rubric every judge prompt starts
    with, the prompt that N judgments of one response all read), instead of one copy per row. A decoding step
    attends to each part once for all the rows that read it and to each row's own tokens (its RoomyCache), and
    joins the partial results by their log-sum-exp (model/attention.py): the attention over a row's whole context,
    reading each shared key once per step instead of once per row."""

    parts: list[PromptPart]

    def selected(self, index: torch.Tensor) -> SharedPrompt:
        """The rows at `index` (the batch after finished rows leave)."""
        return SharedPrompt([part.selected(index) for part in self.parts])
