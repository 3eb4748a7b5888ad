"""gunicorn api.wsgi:app"""

import logging

from api.app import create_app
from provisioning.core import dispatch
from provisioning.core.config import settings
from worker.celery_app import client_app, send_task

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
if settings().uses_development_key and not settings().is_sqlite:
    logging.getLogger("api").warning(
        "PROVISIONING_SECRET_KEY is the development default: invitation links are guessable "
        "by anyone who reads the database. Set a secret key in production."
    )
client_app()  # a broker URL that cannot work stops gunicorn here, not at the first invite
dispatch.use_sender(send_task)
app = create_app()
