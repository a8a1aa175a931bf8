"""Corpus store: conversion, both row formats, fast warm open, clear errors."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from retriever_server.index.corpus import CorpusError, CorpusStore, split_contents


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def test_both_row_formats_and_unicode(tmp_path):
    source = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "0", "contents": '"Zürich"\nZürich is the largest city in Switzerland.\nSecond line.'},
            {"id": 7, "title": "Hồ Chí Minh", "text": "A leader of Vietnam."},
            {"contents": '"No id"\nrow without id'},
        ],
    )
    store = CorpusStore.open(source, tmp_path / "cache")
    assert len(store) == 3
    first = store.passage(0)
    assert (first.id, first.title, first.text) == (
        "0",
        "Zürich",
        "Zürich is the largest city in Switzerland.\nSecond line.",
    )
    second = store.passage(1)
    assert second.contents == '"Hồ Chí Minh"\nA leader of Vietnam.' and second.id == "7"
    assert store.passage(2).id == "2"  # the row number when a row has no id
    assert list(store.iter_contents(1, 2)) == [second.contents]


def test_warm_open_reuses_the_conversion_and_a_changed_file_reconverts(tmp_path):
    source = write_jsonl(tmp_path / "c.jsonl", [{"id": "0", "contents": '"A"\na'}])
    first = CorpusStore.open(source, tmp_path / "cache")
    stamp = (first.directory / "meta.json").stat().st_mtime_ns
    again = CorpusStore.open(source, tmp_path / "cache")
    assert again.directory == first.directory and (again.directory / "meta.json").stat().st_mtime_ns == stamp
    write_jsonl(source, [{"id": "0", "contents": '"A"\na'}, {"id": "1", "contents": '"B"\nb'}])
    os.utime(source, ns=(stamp + 10**9, stamp + 10**9))
    changed = CorpusStore.open(source, tmp_path / "cache")
    assert len(changed) == 2 and changed.fingerprint != first.fingerprint
    assert (
        len(CorpusStore.open(changed.directory, tmp_path / "elsewhere")) == 2
    )  # a converted directory opens as is


def test_gzip_source(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.write(json.dumps({"id": "0", "contents": '"T"\ntext'}) + "\n\n")
    assert CorpusStore.open(path, tmp_path / "cache").passage(0).title == "T"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "c.jsonl:2: not valid JSON"),
        ('["a list"]', "c.jsonl:2: expected a JSON object"),
        ('{"id": "1", "body": "x"}', "c.jsonl:2: a passage needs 'contents'"),
        ('{"id": "1", "title": 3, "text": "x"}', "c.jsonl:2: 'title' and 'text' must be strings"),
    ],
)
def test_bad_rows_name_the_line(tmp_path, line, message):
    source = tmp_path / "c.jsonl"
    source.write_text(json.dumps({"id": "0", "contents": '"A"\na'}) + "\n" + line + "\n")
    with pytest.raises(CorpusError, match=message):
        CorpusStore.open(source, tmp_path / "cache")
    assert not list((tmp_path / "cache" / "corpora").iterdir())  # nothing half-written is kept


def test_missing_and_empty(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        CorpusStore.open(tmp_path / "nope.jsonl", tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(CorpusError, match="no passages"):
        CorpusStore.open(tmp_path / "empty.jsonl", tmp_path)


def test_split_contents():
    assert split_contents('"Title"\ntext\nmore') == ("Title", "text\nmore")
    assert split_contents("no title line") == ("no title line", "")
    assert split_contents('"Quoted "inner""\nx') == ('Quoted "inner"', "x")
