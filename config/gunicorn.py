"""gunicorn settings for the web process (`gunicorn -c config/gunicorn.py creditledger.wsgi`)."""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '4000')}"
workers = int(os.environ.get("WEB_WORKERS", "3"))
threads = int(os.environ.get("WEB_THREADS", "1"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
keepalive = 5


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the Prometheus multiprocess directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
