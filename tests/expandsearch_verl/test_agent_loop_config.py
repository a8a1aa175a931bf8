"""`expandsearch agent-loop-config`: the shipped YAML's path, or a validated variant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hydra
from omegaconf import OmegaConf
from verl.experimental.agent_loop import AgentLoopBase

from expandsearch_verl.agent_loop_config import shipped_path
from expandsearch_verl.cli import main


def test_prints_the_absolute_path_of_the_shipped_yaml(capsys):
    assert main(["agent-loop-config"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed.is_absolute() and printed == shipped_path() and printed.is_file()


def test_console_script_prints_the_same_path():
    command = Path(sys.executable).with_name("expandsearch")
    out = subprocess.run([command, "agent-loop-config"], capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).name == "agent_loops.yaml"


def test_variant_with_overrides_is_what_verl_instantiates(tmp_path: Path, capsys):
    target = tmp_path / "variants" / "search_r1.yaml"
    argv = ["agent-loop-config", "--set", "max_queries=1", "--set", "topk=3", "--set", "squeeze=false"]
    assert main([*argv, "--output", str(target)]) == 0
    assert Path(capsys.readouterr().out.strip()) == target.resolve()
    entry = OmegaConf.load(target)[0]  # what AgentLoopWorker.__init__ does with the path
    assert (entry.name, entry.max_queries, entry.topk, entry.squeeze) == ("expandsearch_agent", 1, 3, False)
    assert issubclass(hydra.utils.get_class(entry._target_), AgentLoopBase)


def test_bad_key_or_value_is_a_clear_error_and_writes_nothing(tmp_path: Path, capsys):
    target = tmp_path / "bad.yaml"
    assert main(["agent-loop-config", "--set", "max_query=1", "--output", str(target)]) == 2
    assert "unknown key 'max_query'" in capsys.readouterr().err
    assert main(["agent-loop-config", "--set", "topk=0", "--set", "protocol=x", "--output", str(target)]) == 2
    err = capsys.readouterr().err
    assert "topk=0: Input should be greater than 0" in err and "protocol='x'" in err
    assert not target.exists()


def test_set_without_output_refuses_to_touch_the_shipped_file(capsys):
    before = shipped_path().read_text()
    assert main(["agent-loop-config", "--set", "topk=3"]) == 2
    assert "--output" in capsys.readouterr().err
    assert shipped_path().read_text() == before
