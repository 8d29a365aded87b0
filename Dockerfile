# One image for every process: web (default), worker, and one-off management commands.
#   docker build -t shop .
#   docker run --env-file prod.env -p 8000:8000 shop
#   docker run --env-file prod.env shop celery -A shop worker --loglevel INFO
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first: this layer is reused until requirements.txt changes.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Static files for whitenoise. Settings refuse to load with DEBUG off unless the required
# variables are set: placeholders serve this build step only, never the running container.
RUN DJANGO_DEBUG=false DJANGO_SECRET_KEY=collectstatic-only ORDER_QUEUE_URL=unused \
    COGNITO_USER_POOL_ID=unused COGNITO_APP_CLIENT_ID=unused \
    python manage.py collectstatic --noinput

RUN useradd --create-home --uid 10001 shop && chown -R shop /app/staticfiles
USER shop

ENV DJANGO_DEBUG=false
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["gunicorn", "shop.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
