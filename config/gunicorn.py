"""gunicorn settings for the web process (`gunicorn -c config/gunicorn.py creditledger.wsgi`)."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '4000')}"
# 2 processes x 4 threads: the best throughput, latency and CPU per transfer measured on two
# cores (docs/adr/0012-web-server.md).
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
keepalive = 5


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the Prometheus multiprocess directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
