"""HTTP: Command Center's REST API under /commandcenter/api; one router file per resource."""

BASE = "/commandcenter/api"  # every router's prefix
