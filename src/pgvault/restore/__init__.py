"""Restoring backups, and proving they restore: verification and drills."""
