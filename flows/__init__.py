"""Prefect flows: thin orchestration over the ``router`` library (which never imports Prefect)."""
