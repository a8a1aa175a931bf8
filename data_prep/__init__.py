"""FlashRAG-format QA datasets to the verl parquet files the recipes train and evaluate on."""
