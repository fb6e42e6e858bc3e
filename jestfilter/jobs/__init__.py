"""Batch jobs over shards (embed, score, filter, dedup), split by rank, idempotent per shard."""
