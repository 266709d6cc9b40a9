"""The demo plant: simulated machines and the servers that publish them (no Qt)."""
