"""The master patient index service: the record-linkage engine of ``identity/`` on the graph."""
