"""Scale-out over a Ray cluster: shard actors and their coordinator."""
