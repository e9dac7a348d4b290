"""The placement policy: refuse co-located replicas, and show what survives a disaster."""
