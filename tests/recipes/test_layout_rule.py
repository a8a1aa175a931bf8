"""recipes/gpu_layout.sh's one rule, through the three scripts that source it: the training recipe,
launch_squeezer.sh and launch_retriever.sh, each run for real with stand-ins for verl, vLLM,
retriever_server and the doctor that record the CUDA_VISIBLE_DEVICES they got and their arguments."""

from __future__ import annotations

import pytest

TRAIN = "train_expandsearch_ppo_qwen2.5-3b.sh"


@pytest.mark.parametrize(
    ("scheduler", "nvidia_smi", "variables", "train", "squeezer"),
    [
        ("0,1,2,3,4,5,6,7", 8, {}, "0,1,2,3,4,5,6", "7"),  # SLURM or Kubernetes giving the whole node
        ("2,3,4,5", 8, {}, "2,3,4", "5"),  # a share of a node: the scheduler's indices, not nvidia-smi's
        ("0,1,2,3,4,5,6,7", 8, {"TP": "2"}, "0,1,2,3,4,5", "6,7"),  # a squeezer on two GPUs
        (None, 4, {}, "0,1,2", "3"),  # unset: every GPU nvidia-smi lists
        (None, None, {}, "0,1,2,3,4,5,6", "7"),  # unset and no nvidia-smi: the 8-GPU node of the recipes
        ("0,1,2,3,4,5,6,7", 8, {"SQUEEZER_GPUS": ""}, "0,1,2,3,4,5,6,7", ""),  # a remote squeezer
    ],
)
def test_the_three_scripts_take_one_layout(
    scheduler, nvidia_smi, variables, train, squeezer, recipe_env, gpus_on_node, launch
):
    gpus_on_node(nvidia_smi)
    env = recipe_env(**variables, **({"CUDA_VISIBLE_DEVICES": scheduler} if scheduler else {}))
    trainer = launch(TRAIN, env)
    assert trainer.returncode == 0, trainer.stderr
    assert trainer.visible == train and trainer.doctor_visible == train
    assert f"trainer.n_gpus_per_node={len(train.split(','))}" in trainer.argv
    assert trainer.doctor_gpus == {
        "--train-gpus": train,
        "--retriever-gpus": train,
        "--squeezer-gpus": squeezer,
    }

    retriever = launch("launch_retriever.sh", env)
    assert retriever.returncode == 0, retriever.stderr
    ordinals = ",".join(str(index) for index in range(len(train.split(","))))
    assert retriever.visible == train and retriever.argv[retriever.argv.index("--gpus") + 1] == ordinals

    vllm = launch("launch_squeezer.sh", env)
    if squeezer:
        assert vllm.returncode == 0, vllm.stderr
        assert vllm.visible == squeezer
        assert vllm.argv[vllm.argv.index("--tensor-parallel-size") + 1] == variables.get("TP", "1")
    else:  # no squeezer on this node: launching one says so
        assert (
            vllm.returncode == 2 and vllm.visible is None and "SQUEEZER_GPUS= means a remote" in vllm.stderr
        )


@pytest.mark.parametrize(
    ("script", "variables", "named"),
    [
        (
            TRAIN,
            {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "TRAIN_GPUS": "4,5"},
            "TRAIN_GPUS=4,5: GPU 4 is not among CUDA_VISIBLE_DEVICES=0,1,2,3; pick from 0,1,2,3",
        ),
        (
            TRAIN,
            {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "TRAIN_GPUS": "0,1,2,3,4,5,6,7"},
            "TRAIN_GPUS=0,1,2,3,4,5,6,7 and SQUEEZER_GPUS=7 share GPU 7: the squeezer's vLLM takes 90% of its "
            "GPUs; set TRAIN_GPUS=0,1,2,3,4,5,6, or SQUEEZER_GPUS= for a remote squeezer",
        ),
        (TRAIN, {"SQUEEZER_GPUS": "0", "TRAIN_GPUS": "0,1,2"}, "and SQUEEZER_GPUS=0 share GPU 0"),
        (
            TRAIN,
            {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "SQUEEZER_GPUS": "7"},
            "SQUEEZER_GPUS=7: GPU 7 is not among",
        ),
        (
            TRAIN,
            {"CUDA_VISIBLE_DEVICES": "3"},
            "TRAIN_GPUS: no GPU left to train (CUDA_VISIBLE_DEVICES=3, SQUEEZER_GPUS=3)",
        ),
        (
            TRAIN,
            {"CUDA_VISIBLE_DEVICES": "GPU-5f1d"},
            "CUDA_VISIBLE_DEVICES=GPU-5f1d: the recipes take GPU indices",
        ),
        (TRAIN, {"TP": "9"}, "TP=9: the squeezer would take more GPUs than"),
        (  # the scheduler's list as the squeezer's GPUS: vLLM with TP=1 would sit on GPU 0, beside a trainer
            "launch_squeezer.sh",
            {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "GPUS": "0,1,2,3,4,5,6,7"},
            "GPUS=0,1,2,3,4,5,6,7 lists 8 GPU(s) but TP=1",
        ),
        (
            "launch_squeezer.sh",
            {"TRAIN_GPUS": "0,1,2,3,4,5,6", "GPUS": "6"},
            "TRAIN_GPUS=0,1,2,3,4,5,6 and GPUS=6 share GPU 6",
        ),
        (
            "launch_squeezer.sh",
            {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "GPUS": "7"},
            "GPUS=7: GPU 7 is not among CUDA_VISIBLE_DEVICES=0,1,2,3",
        ),
        (
            "launch_retriever.sh",
            {"CUDA_VISIBLE_DEVICES": "4,5,6,7", "GPUS": "0,1"},
            "GPUS=0,1: GPU 0 is not among CUDA_VISIBLE_DEVICES=4,5,6,7",
        ),
        ("launch_retriever.sh", {"RETRIEVER_GPUS": "0,0"}, "RETRIEVER_GPUS=0,0: a GPU is listed twice"),
    ],
)
def test_a_layout_that_cannot_hold_stops_with_the_settings_named(
    script, variables, named, recipe_env, launch
):
    stopped = launch(script, recipe_env(**variables))
    assert stopped.returncode == 2 and stopped.visible is None and stopped.doctor_gpus == {}
    assert named in stopped.stderr


def test_the_dry_runs_say_the_layout(recipe_env, run_recipe):
    env = recipe_env(CUDA_VISIBLE_DEVICES="0,1,2,3,4,5,6,7")
    said = {
        script: run_recipe(script, env).stderr
        for script in (TRAIN, "launch_squeezer.sh", "launch_retriever.sh")
    }
    visible = "layout (CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7): "
    assert (
        f"{visible}CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6 RETRIEVER_GPUS=0,1,2,3,4,5,6 SQUEEZER_GPUS=7"
        in said[TRAIN]
    )
    assert f"{visible}CUDA_VISIBLE_DEVICES=7" in said["launch_squeezer.sh"]
    assert f"{visible}CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6 --gpus 0,1,2,3,4,5,6" in said["launch_retriever.sh"]


def test_the_layout_script_prints_what_the_others_resolve(recipe_env, run_recipe, gpus_on_node):
    gpus_on_node(4)
    printed = run_recipe("gpu_layout.sh", recipe_env()).stdout.splitlines()
    assert printed == [
        "visible: nvidia-smi's GPUs 0,1,2,3",
        "TRAIN_GPUS=0,1,2 RETRIEVER_GPUS=0,1,2 SQUEEZER_GPUS=3",
    ]


@pytest.mark.parametrize(("scheduler", "nvidia_smi", "visible"), [("", 8, ""), (None, 1, "unset")])
def test_device_cpu_needs_no_gpu_left_to_train(
    scheduler, nvidia_smi, visible, recipe_env, gpus_on_node, launch
):
    """GPUs hidden (CUDA_VISIBLE_DEVICES=) or one GPU the squeezer's default takes: the CPU run goes on,
    one rank, and leaves CUDA_VISIBLE_DEVICES as it was."""
    gpus_on_node(nvidia_smi)
    env = recipe_env(
        DEVICE="cpu",
        SKIP_DOCTOR="1",
        **({"CUDA_VISIBLE_DEVICES": scheduler} if scheduler is not None else {}),
    )
    launched = launch(TRAIN, env)
    assert launched.returncode == 0, launched.stderr
    assert launched.visible == visible and "trainer.n_gpus_per_node=1" in launched.argv
