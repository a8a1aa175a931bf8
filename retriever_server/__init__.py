"""Retrieval service for search agents: corpus, encoders, faiss / BM25 indexes, multi-query search.

A separate service: it imports nothing from `expandsearch_verl`.
"""
