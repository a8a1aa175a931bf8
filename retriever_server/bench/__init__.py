"""Benchmarks of the retriever server and the squeezer (not imported by `serve`)."""
