"""gunicorn's settings, from the product's: ``gunicorn -c python:api.gunicorn_conf api.wsgi:app``.

gunicorn reads this module once at start-up, so here (as in ``api.wsgi``) reading the
settings at import is the point.
"""

from provisioning.core.config import settings

bind = [settings().api_bind]
workers = settings().web_workers
accesslog = "-"
logger_class = "api.redaction.GunicornLogger"  # no invitation token or credential in a log line
