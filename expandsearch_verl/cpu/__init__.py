"""verl's real trainer on a CPU: a platform, an HF rollout and the process group verl's CPU path needs.

Nothing here runs until asked: `DEVICE=cpu` on a training recipe (or the two variables
`python -m expandsearch_verl.cpu env` prints) makes verl import `plugin`, which registers it all.
`expandsearch_verl.verl_internals` names every verl internal it depends on (user `cpu backend`);
docs/train-on-cpu.md is the user's page.
"""
