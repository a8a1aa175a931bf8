"""The CPU backend's reaches into verl internals still hold in the installed verl, and a moved one is caught."""

from __future__ import annotations

import dataclasses

import pytest

from expandsearch_verl.cpu import verl_internals
from expandsearch_verl.cpu.verl_internals import REACHES, VerlChanged, check_verl


def test_every_reach_holds_in_the_installed_verl():
    check_verl()


@pytest.mark.parametrize("name", sorted(REACHES))
def test_a_moved_reach_is_named(monkeypatch, name):
    moved = dict(REACHES)
    moved[name] = dataclasses.replace(REACHES[name], line=REACHES[name].line + 1)
    monkeypatch.setattr(verl_internals, "REACHES", moved)
    with pytest.raises(VerlChanged, match=rf"{name}: verl/{REACHES[name].file}:{REACHES[name].line + 1}"):
        check_verl()


def test_another_verl_version_is_refused(monkeypatch):
    monkeypatch.setattr(verl_internals, "VERL_VERSION", "0.0.1")
    with pytest.raises(VerlChanged, match=r"written against 0\.0\.1"):
        check_verl()
