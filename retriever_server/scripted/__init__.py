"""Scripted stand-ins for the LLM servers the project talks to, where none can run (no GPU, no network).

Test and benchmark tooling, in one place; `python -m retriever_server serve` imports none of it.

- `chat_server.ScriptedChatServer`: OpenAI's chat-completions API, answering at once or as scripted
  (429, 500, slow, malformed...): the squeezer's `openai` backend, its tests and its benchmark.
- `policy.turn_text`: a rule-based policy for the `tags` and `tool_call` protocols (search the
  question in two phrasings, then answer with the first title read), and `engine_cut`, vLLM's rule
  for where a stop string ends a turn; in-process generators of the tests reuse both.
- `policy_server.ScriptedPolicyServer`: vLLM's completions API over that policy: the evaluation's
  tests and its overhead benchmark.
- `asgi`: the bare-ASGI plumbing both servers share.

The doubles live on the server's side of the project because the squeezer's benchmark needs the chat
double and `retriever_server` imports nothing from `expandsearch_verl`.
"""
