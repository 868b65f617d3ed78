"""tunecast's HTTP API (FastAPI): the estimator over JSON, for budget tools and dashboards.

    uvicorn --factory service.api.app:create_app      (or ``estimate serve``)

Routes only translate between JSON and the estimator; every failure has one error body
(``service.api.errors``); settings come from ``TUNECAST_*`` environment variables
(``service.api.settings``).
"""
