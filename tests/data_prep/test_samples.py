"""Consistency of the shipped sample data: FlashRAG-format QA files and the wiki-18-format corpus.

The samples let the tests and `expandsearch demo` run the whole pipeline offline, so they must be
internally consistent: every golden answer is retrievable from the corpus, every multi-hop row's
bridge passages exist, and the files follow the exact layouts of `RUC-NLPIR/FlashRAG_datasets` and
wiki-18. Every check reports all offending rows at once.
"""

import json
import re
import string
import unicodedata
from pathlib import Path

import pytest

import data_prep
import retriever_server

SAMPLES = Path(data_prep.__file__).parent / "samples"
CORPUS = Path(retriever_server.__file__).parent / "samples" / "corpus.jsonl"

# (dataset, split) -> rows, mirroring the splits FlashRAG publishes for each dataset.
EXPECTED_ROWS = {
    ("nq", "train"): 30, ("nq", "dev"): 10, ("nq", "test"): 20,
    ("triviaqa", "train"): 10, ("triviaqa", "dev"): 10, ("triviaqa", "test"): 20,
    ("popqa", "test"): 20,
    ("hotpotqa", "train"): 30, ("hotpotqa", "dev"): 20,
    ("2wikimultihopqa", "train"): 10, ("2wikimultihopqa", "dev"): 20,
    ("musique", "train"): 10, ("musique", "dev"): 20,
    ("bamboogle", "test"): 20,
}  # fmt: skip
# Multi-hop datasets: the allowed `metadata.type` values (the question types each benchmark uses).
HOP_TYPES = {
    "hotpotqa": {"bridge", "comparison"},
    "2wikimultihopqa": {"compositional", "comparison", "inference", "bridge_comparison"},
    "musique": {"2hop", "3hop", "4hop"},
    "bamboogle": {"compositional"},
}
YES_NO = {"yes", "no"}  # comparison answers that are judged, not quoted from a passage
ROW_KEYS = {"id", "question", "golden_answers", "metadata"}
CORPUS_SIZE = (350, 500)
PASSAGE_WORDS = (40, 160)  # wiki-18 chunks are ~100 words; ours are 60-120 plus the repeated title


def normalize(text: str) -> str:
    """SQuAD answer normalisation: lower-case, drop punctuation and articles, collapse spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def occurs(answer: str, passage: str) -> bool:
    """Whole-token containment of a normalised answer in a normalised passage."""
    return f" {answer} " in f" {passage} "


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(line)
        assert isinstance(row, dict), f"{path}:{number}: expected a JSON object, got {type(row).__name__}"
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def qa() -> dict[tuple[str, str], list[dict]]:
    return {key: read_jsonl(SAMPLES / key[0] / f"{key[1]}.jsonl") for key in EXPECTED_ROWS}


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return read_jsonl(CORPUS)


@pytest.fixture(scope="module")
def passages(corpus) -> list[tuple[str, str]]:
    """(title, normalised contents) per passage; the title line is searched too, as retrievers see it."""
    return [(row["contents"].split("\n", 1)[0].strip('"'), normalize(row["contents"])) for row in corpus]


def all_rows(qa):
    for (dataset, split), rows in qa.items():
        for row in rows:
            yield dataset, split, row


def test_layout_matches_flashrag_splits_and_row_counts():
    on_disk = {(p.parent.name, p.stem) for p in SAMPLES.glob("*/*.jsonl")}
    assert on_disk == set(EXPECTED_ROWS), (
        f"missing {set(EXPECTED_ROWS) - on_disk}, extra {on_disk - set(EXPECTED_ROWS)}"
    )
    counts = {key: len(read_jsonl(SAMPLES / key[0] / f"{key[1]}.jsonl")) for key in EXPECTED_ROWS}
    assert counts == EXPECTED_ROWS


@pytest.mark.parametrize("dataset, split", sorted(EXPECTED_ROWS))
def test_row_schema_and_ids(qa, dataset, split):
    problems = []
    for n, row in enumerate(qa[dataset, split]):
        where = f"{dataset}/{split}.jsonl row {n}"
        if not {"id", "question", "golden_answers"} <= row.keys() <= ROW_KEYS:
            problems.append(f"{where}: keys {sorted(row)}, expected {sorted(ROW_KEYS)} (metadata optional)")
            continue
        if row["id"] != f"{split}_{n}":
            problems.append(f"{where}: id {row['id']!r}, expected {split}_{n!r}")
        if (
            not isinstance(row["question"], str)
            or row["question"] != row["question"].strip()
            or not row["question"]
        ):
            problems.append(f"{where}: question {row['question']!r} must be a non-empty stripped string")
        answers = row["golden_answers"]
        if not (
            isinstance(answers, list) and answers and all(isinstance(a, str) and a.strip() for a in answers)
        ):
            problems.append(
                f"{where}: golden_answers {answers!r} must be a non-empty list of non-empty strings"
            )
        elif len({normalize(a) for a in answers}) != len(answers):
            problems.append(f"{where}: golden_answers {answers!r} repeat an alias after normalisation")
        if "metadata" in row and not isinstance(row["metadata"], dict):
            problems.append(f"{where}: metadata {row['metadata']!r} must be an object")
    ids = [row.get("id") for row in qa[dataset, split]]
    assert len(ids) == len(set(ids)), f"{dataset}/{split}: duplicate ids"
    assert not problems, "\n".join(problems)


def test_question_style_follows_each_benchmark(qa):
    nq = [row["question"] for key, rows in qa.items() if key[0] == "nq" for row in rows]
    assert all(q == q.lower() and not q.endswith("?") for q in nq), "NQ questions are lower-case, no '?'"
    others = [row["question"] for key, rows in qa.items() if key[0] != "nq" for row in rows]
    assert all(q[0].isupper() and q.endswith("?") for q in others)


def test_multihop_metadata(qa):
    problems = []
    for dataset, split, row in all_rows(qa):
        if dataset not in HOP_TYPES:
            continue
        where = f"{dataset}/{split} {row['id']}"
        meta = row.get("metadata", {})
        titles = meta.get("supporting_titles")
        if meta.get("type") not in HOP_TYPES[dataset]:
            problems.append(f"{where}: type {meta.get('type')!r} not in {sorted(HOP_TYPES[dataset])}")
        if not (isinstance(titles, list) and len(titles) >= 2 and len(set(titles)) == len(titles)):
            problems.append(f"{where}: supporting_titles {titles!r} must list >= 2 distinct titles")
        elif (
            dataset == "musique"
            and meta.get("type") in HOP_TYPES["musique"]
            and len(titles) != int(meta["type"][0])
        ):
            problems.append(f"{where}: a {meta['type']} chain needs {meta['type'][0]} titles, got {titles}")
        if {normalize(a) for a in row["golden_answers"]} & YES_NO and "comparison" not in meta.get(
            "type", ""
        ):
            problems.append(f"{where}: yes/no answers only belong to comparison questions")
    assert not problems, "\n".join(problems)


def test_every_golden_answer_occurs_in_the_corpus(qa, passages):
    missing = []
    for dataset, split, row in all_rows(qa):
        for answer in row["golden_answers"]:
            norm = normalize(answer)
            if norm in YES_NO:
                continue
            if not any(occurs(norm, text) for _, text in passages):
                missing.append(f"{dataset}/{split} {row['id']}: {answer!r}")
    assert not missing, "golden answers absent from every passage:\n" + "\n".join(missing)


def test_supporting_passages_exist_and_hold_the_answer(qa, passages):
    by_title: dict[str, list[str]] = {}
    for title, text in passages:
        by_title.setdefault(title, []).append(text)
    problems = []
    for dataset, split, row in all_rows(qa):
        titles = row.get("metadata", {}).get("supporting_titles", [])
        where = f"{dataset}/{split} {row['id']}"
        problems += [
            f"{where}: supporting title {t!r} is not a corpus title" for t in titles if t not in by_title
        ]
        answers = [normalize(a) for a in row["golden_answers"] if normalize(a) not in YES_NO]
        texts = [text for t in titles for text in by_title.get(t, [])]
        if titles and answers and not any(occurs(a, text) for a in answers for text in texts):
            problems.append(f"{where}: no supporting passage states any of {row['golden_answers']}")
    assert not problems, "\n".join(problems)


def test_train_and_eval_questions_differ(qa):
    train = {
        normalize(row["question"]) for (_, split), rows in qa.items() if split == "train" for row in rows
    }
    evals = {
        normalize(row["question"]) for (_, split), rows in qa.items() if split != "train" for row in rows
    }
    assert not train & evals


def test_corpus_format_ids_and_size(corpus):
    problems = []
    for n, row in enumerate(corpus):
        if set(row) != {"id", "contents"}:
            problems.append(f"line {n + 1}: keys {sorted(row)}, expected ['contents', 'id']")
            continue
        if row["id"] != str(n):
            problems.append(f"line {n + 1}: id {row['id']!r}, expected {str(n)!r} (consecutive from '0')")
        head, _, text = row["contents"].partition("\n")
        if not (len(head) > 2 and head[0] == head[-1] == '"' and text.strip()):
            problems.append(
                f"id {row['id']}: contents must be '\"Title\"\\ntext', got {row['contents'][:60]!r}"
            )
        words = len(text.split())
        if not PASSAGE_WORDS[0] <= words <= PASSAGE_WORDS[1]:
            problems.append(f"id {row['id']}: {words} words, expected {PASSAGE_WORDS}")
    assert not problems, "\n".join(problems)
    assert CORPUS_SIZE[0] <= len(corpus) <= CORPUS_SIZE[1]
    contents = [row["contents"] for row in corpus]
    assert len(contents) == len(set(contents)), "duplicate passages"


def test_corpus_has_distractors(qa, passages):
    """Near-miss passages keep retrieval from being trivial. A distractor is a passage that no row
    names as support, whose title is neither named in a question nor a golden answer, and that is not
    the only passage stating some golden answer."""
    rows = [row for _, _, row in all_rows(qa)]
    support = {t for row in rows for t in row.get("metadata", {}).get("supporting_titles", [])}
    questions = [f" {normalize(row['question'])} " for row in rows]
    answers = {normalize(a) for row in rows for a in row["golden_answers"]} - YES_NO
    holders = {a: [i for i, (_, text) in enumerate(passages) if occurs(a, text)] for a in answers}
    sole_sources = {found[0] for found in holders.values() if len(found) == 1}
    distractors = []
    for i, (title, _) in enumerate(passages):
        name = normalize(re.sub(r"\s*\(.*\)$", "", title))  # "Psycho (1998 film)" names "psycho"
        named = name in answers or any(f" {name} " in q for q in questions)
        if title not in support and not named and i not in sole_sources:
            distractors.append(title)
    assert len(distractors) >= 80, f"only {len(distractors)} distractors: {distractors}"


def test_unicode_aliases_and_numbers_are_covered(qa, corpus):
    texts = [s for _, _, row in all_rows(qa) for s in [row["question"], *row["golden_answers"]]]
    scripts = {
        "latin with diacritics": r"[À-ɏ]",
        "greek": r"[Ͱ-Ͽἀ-῿]",
        "cyrillic": r"[Ѐ-ӿ]",
        "cjk": r"[　-鿿]",
        "hangul": r"[가-힯ᄀ-ᇿ㄰-㆏]",
    }
    found = {name: any(re.search(pattern, t) for t in texts) for name, pattern in scripts.items()}
    assert all(found.values()), f"scripts without a sample row: {[n for n, ok in found.items() if not ok]}"
    rows = [row for _, _, row in all_rows(qa)]
    assert sum(len(row["golden_answers"]) > 1 for row in rows) >= 50, "want plenty of multi-alias rows"
    assert sum(any(re.fullmatch(r"\d{1,4}", a) for a in row["golden_answers"]) for row in rows) >= 10
    everything = [*texts, *(row["contents"] for row in corpus)]
    assert all(unicodedata.is_normalized("NFC", t) for t in everything), "store text in NFC"
