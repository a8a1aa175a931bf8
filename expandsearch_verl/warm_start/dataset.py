"""The warm start's examples as verl's SFT trainer reads them: token ids and loss mask as built.

verl's `MultiTurnSFTDataset` re-renders chat messages through the chat template; the warm start's
examples are already the agent loop's own token ids (prompt, teacher turns, retriever observations)
with the loop's mask (0 on the prompt and the observations), so this class hands them over
unchanged, in the layout verl's SFT trainer expects with `data.pad_mode=no_padding` (one 1-D tensor
per key; `SFTTensorCollator` nests them). verl's `sft_loss` shifts the mask by one position, so a
1 at position i trains the prediction of token i: the teacher's tokens, never an observation's.

Named by `data.custom_cls.path=<this file> data.custom_cls.name=TokenizedSFTDataset`.
"""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset


class TokenizedSFTDataset(Dataset):
    """Rows of `input_ids` and `loss_mask` (equal lengths, at most `data.max_length`) from parquet files."""

    def __init__(
        self,
        parquet_files: str | list[str],
        tokenizer: Any,
        config: Any,
        processor: Any = None,
        max_samples: int = -1,
    ):
        files = [parquet_files] if isinstance(parquet_files, str) else list(parquet_files)
        max_length = int(config.get("max_length", 1024))
        self.rows: list[tuple[list[int], list[int]]] = []
        for path in files:
            missing = {"input_ids", "loss_mask"} - set(pq.read_schema(path).names)
            if missing:
                raise ValueError(f"{path}: no column {sorted(missing)} (written by warm_start.build?)")
            table = pq.read_table(path, columns=["input_ids", "loss_mask"])
            for index, (ids, mask) in enumerate(
                zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)
            ):
                if len(ids) != len(mask):
                    raise ValueError(
                        f"{path} row {index}: input_ids has {len(ids)} tokens, loss_mask {len(mask)}"
                    )
                if len(ids) > max_length:
                    raise ValueError(
                        f"{path} row {index}: {len(ids)} tokens, above data.max_length={max_length}; raise it"
                    )
                if not any(mask):
                    raise ValueError(f"{path} row {index}: loss_mask has no 1, nothing to train")
                self.rows.append((ids, mask))
        if max_samples > 0:
            self.rows = self.rows[:max_samples]
        if not self.rows:
            raise ValueError(f"no examples in {files}")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids, mask = self.rows[index]
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "position_ids": torch.arange(len(ids), dtype=torch.long),
            "loss_mask": torch.tensor(mask, dtype=torch.long),
        }
