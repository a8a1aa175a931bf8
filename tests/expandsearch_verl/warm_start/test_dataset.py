"""The warm start's examples reach verl's SFT loss unchanged: exactly the teacher's tokens are trained.

verl's own collator (`SFTTensorCollator`, no padding) and loss (`sft_loss`, which shifts the mask by
one position) run on `TokenizedSFTDataset`'s items; a log-prob that marks each position shows which
predictions the loss counts.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from expandsearch_verl.warm_start.dataset import TokenizedSFTDataset

# prompt (mask 0), a teacher turn (1), an observation (0), the answer turn (1)
IDS = [[10, 11, 12, 20, 21, 30, 31, 32, 40, 41], [10, 13, 22, 33, 42, 43]]
MASKS = [[0, 0, 0, 1, 1, 0, 0, 0, 1, 1], [0, 0, 1, 0, 1, 1]]


def write(path, ids, masks) -> str:
    pq.write_table(
        pa.Table.from_pylist([{"input_ids": i, "loss_mask": m} for i, m in zip(ids, masks, strict=True)]),
        path,
    )
    return str(path)


def test_the_loss_counts_the_prediction_of_each_trained_token_only(tmp_path):
    from verl.utils.dataset.dataset_utils import SFTTensorCollator
    from verl.workers.utils.losses import sft_loss

    data = TokenizedSFTDataset(write(tmp_path / "a.parquet", IDS, MASKS), None, {"max_length": 16})
    assert len(data) == 2
    item = data[0]
    assert item["input_ids"].tolist() == IDS[0] and item["loss_mask"].tolist() == MASKS[0]
    assert item["position_ids"].tolist() == list(range(len(IDS[0])))
    batch = SFTTensorCollator("no_padding")([data[0], data[1]])
    # log_prob[t] scores the prediction of token t + 1; mark each position with the token it predicts
    predicted = [[*ids[1:], 0] for ids in IDS]
    log_probs = torch.nested.as_nested_tensor(
        [-torch.tensor(p, dtype=torch.float32) for p in predicted], layout=torch.jagged
    )
    batch.update({"dp_size": 1, "batch_num_tokens": 1})
    loss, _ = sft_loss(None, {"log_probs": log_probs}, batch)
    trained = [t for ids, mask in zip(IDS, MASKS, strict=True) for t, m in zip(ids, mask, strict=True) if m]
    assert loss.item() == pytest.approx(sum(trained))  # every 1 of the mask, no 0, each once


@pytest.mark.parametrize(
    ("ids", "masks", "message"),
    [
        ([[1, 2, 3]], [[0, 1]], "input_ids has 3 tokens, loss_mask 2"),
        ([list(range(20))], [[1] * 20], "20 tokens, above data.max_length=16"),
        ([[1, 2]], [[0, 0]], "loss_mask has no 1"),
    ],
)
def test_a_bad_example_is_refused_naming_the_row(tmp_path, ids, masks, message):
    with pytest.raises(ValueError, match=message) as error:
        TokenizedSFTDataset(write(tmp_path / "b.parquet", ids, masks), None, {"max_length": 16})
    assert "row 0" in str(error.value)


def test_max_samples_and_an_empty_file(tmp_path):
    assert len(TokenizedSFTDataset(write(tmp_path / "c.parquet", IDS, MASKS), None, {}, max_samples=1)) == 1
    schema = pa.schema([("input_ids", pa.list_(pa.int32())), ("loss_mask", pa.list_(pa.int8()))])
    pq.write_table(schema.empty_table(), tmp_path / "d.parquet")
    with pytest.raises(ValueError, match="no examples"):
        TokenizedSFTDataset(str(tmp_path / "d.parquet"), None, {})
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "e.parquet")
    with pytest.raises(ValueError, match=r"no column \['input_ids', 'loss_mask'\]"):
        TokenizedSFTDataset(str(tmp_path / "e.parquet"), None, {})
