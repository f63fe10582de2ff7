"""The edge agent: drivers, validation and the store composed for one site."""
