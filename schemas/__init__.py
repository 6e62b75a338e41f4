"""Event contracts: JSON Schema files, typed records and input validation."""
