"""gunicorn api.wsgi:app"""

import logging

from gunicorn.errors import AppImportError

from api.app import create_app
from api.redaction import REDACT_SECRETS
from provisioning.core import dispatch
from provisioning.core.config import MissingSecretKey, settings
from worker.celery_app import client_app, send_task

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
for handler in logging.getLogger().handlers:
    handler.addFilter(REDACT_SECRETS)  # invitation tokens and credentials never reach the log
try:
    settings().require_secret_key()  # the development key only on the embedded set-up
except MissingSecretKey as problem:
    raise AppImportError(str(problem)) from None  # gunicorn stops with the message alone
client_app()  # a broker URL that cannot work stops gunicorn here, not at the first invite
dispatch.use_sender(send_task)
app = create_app()
