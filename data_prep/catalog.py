"""The QA datasets the papers train and evaluate on, and where each one's splits live.

Split availability mirrors the hub dataset `RUC-NLPIR/FlashRAG_datasets`: HotpotQA, 2Wiki and
Musique have no public test answers, so their dev split is the test set (as in Search-R1 and ferret).
"""

from __future__ import annotations

from dataclasses import dataclass

from data_prep.errors import DataPrepError

HUB_DATASET = "RUC-NLPIR/FlashRAG_datasets"


@dataclass(frozen=True)
class QADataset:
    name: str
    splits: tuple[str, ...]  # splits published in FlashRAG, in preference order for evaluation
    multi_hop: bool

    @property
    def eval_split(self) -> str:
        """The split that serves as the test set: `test` when published, else `dev`."""
        return "test" if "test" in self.splits else "dev"


# The paper's seven, in the order of its results table.
DATASETS: dict[str, QADataset] = {
    d.name: d
    for d in (
        QADataset("nq", ("train", "dev", "test"), multi_hop=False),
        QADataset("triviaqa", ("train", "dev", "test"), multi_hop=False),
        QADataset("popqa", ("test",), multi_hop=False),
        QADataset("hotpotqa", ("train", "dev"), multi_hop=True),
        QADataset("2wikimultihopqa", ("train", "dev"), multi_hop=True),
        QADataset("musique", ("train", "dev"), multi_hop=True),
        QADataset("bamboogle", ("test",), multi_hop=True),
    )
}

TRAIN_DATASETS = ("nq", "hotpotqa")  # Search-R1 and ExpandSearch train on NQ + HotpotQA
TEST_DATASETS = tuple(DATASETS)


def parse_dataset_list(text: str, option: str) -> list[str]:
    """`"nq,hotpotqa"` -> `["nq", "hotpotqa"]`, refusing unknown names with the list of known ones."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        raise DataPrepError(
            f"{option}: unknown dataset(s) {', '.join(unknown)}; known datasets: {', '.join(DATASETS)}"
        )
    return list(dict.fromkeys(names))
