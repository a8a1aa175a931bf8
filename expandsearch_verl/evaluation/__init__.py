"""Standalone evaluation: `expandsearch eval` and `expandsearch demo`.

The training agent loop (`ExpandSearchAgentLoop`, built as verl builds it) driven by a policy behind
an OpenAI-compatible server (`openai_policy`) or a local model (`hf_policy`), over a data_prep
parquet (`rows`), scored with the training reward (`records`), written resumably (`results`) and
summarised like the papers' tables (`summary`). `runner` runs the trajectories concurrently;
`eval_cli` and `demo` are the two commands.
"""
