"""Ingest: polling, series processing (validation + intervalization) and store writes."""
