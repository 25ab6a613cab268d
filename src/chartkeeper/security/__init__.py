"""Identity, the one policy check, and the tamper-evident audit trail."""
