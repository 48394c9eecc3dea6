"""pgvault: a data-protection control plane for PostgreSQL fleets, speaking Command Center's REST API."""

__version__ = "0.1.0"
