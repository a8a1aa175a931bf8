"""ExpandSearch as a verl 0.9.1 plugin: the agent loop, its retriever client and the reward.

Nothing heavy is imported here: verl's Ray workers import `expandsearch_verl.agent_loop` and
`expandsearch_verl.reward` by name, and the CLI should start fast.
"""

from importlib.resources import files

__version__ = files(__name__).joinpath("VERSION").read_text().strip()
