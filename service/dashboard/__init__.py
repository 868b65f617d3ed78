"""The planning dashboard (GitHub issue 7): memory breakdown, OOM sweeps, GPU × method fit matrix,
TCO bill and calibration charts.

    from service import dashboard
    app.include_router(dashboard.router)       # GET /dashboard, /dashboard/data, /dashboard/plotly.min.js

``figures`` holds the pure figure builders (estimator outputs in, plotly figures out), ``data`` the
estimator calls behind them, ``page`` the HTML. ``estimate report`` (``service.cli_report``) writes
the same charts into one self-contained HTML file.
"""

from service.dashboard.routes import router

__all__ = ["router"]
