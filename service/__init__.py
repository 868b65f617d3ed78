"""Delivery: the ``estimate`` CLI, the HTTP API and the dashboards. Translates only; the arithmetic
lives in ``estimator``."""
