"""Users, roles, password hashes, login sessions and the hash-chained audit trail (no Qt)."""
