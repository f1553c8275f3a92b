"""The WSGI entry point gunicorn loads: ``appliance.wsgi:app``."""

from appliance.app import create_app

app = create_app()
