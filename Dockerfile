# syntax=docker/dockerfile:1
# One image for every Credit Ledger process; docker-compose.yml picks the command:
#   migrate   python manage.py migrate --no-input
#   web       gunicorn --config config/gunicorn.py creditledger.wsgi:application --bind 0.0.0.0:4000 (default; 2 workers x 4 threads)
#   worker    celery -A creditledger worker --pool=solo --loglevel=info
#   beat      celery -A creditledger beat --loglevel=info --schedule /tmp/celerybeat-schedule
#   consumer  python manage.py consume_projections
# Configuration comes from the environment only (.env.example lists every variable).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production

# The processes run as an unprivileged user; the code stays root-owned and read-only to it.
RUN groupadd --system --gid 10001 creditledger \
    && useradd --system --uid 10001 --gid creditledger --create-home --home-dir /home/creditledger \
        --shell /usr/sbin/nologin creditledger

WORKDIR /app

# Dependencies first: this layer is rebuilt only when the pinned requirements change.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .

# gunicorn's workers share Prometheus samples here (PROMETHEUS_MULTIPROC_DIR); compose
# mounts a fresh tmpfs over it on every start. Compose's api-keys service writes Prometheus'
# API key to /var/lib/creditledger/keys (a volume that takes this directory's owner).
RUN mkdir -p /tmp/prometheus /var/lib/creditledger/keys \
    && chown 10001:10001 /tmp/prometheus /var/lib/creditledger/keys

USER 10001:10001

EXPOSE 4000 9101 9102

CMD ["gunicorn", "--config", "config/gunicorn.py", "creditledger.wsgi:application", "--bind", "0.0.0.0:4000"]
