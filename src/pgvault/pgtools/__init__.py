"""Everything that runs PostgreSQL's own programs or talks to a protected server."""
