"""HTTP: Command Center's REST API under /commandcenter/api; one router file per resource."""
