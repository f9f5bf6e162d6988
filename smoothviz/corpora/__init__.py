"""Corpus mode: many sentences batched through the pipeline (``run``, locally or on Ray) into one Parquet table with
its statistics (``store``)."""
