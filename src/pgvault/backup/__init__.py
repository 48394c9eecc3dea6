"""Taking backups: discovery of the databases, dumps streamed to storage, the manifest last."""
