"""The WSGI entry point gunicorn loads: ``appliance.wsgi:app``.

The client-certificate middleware is installed here and only here: it turns the certificate
verified in the TLS handshake into the request's identity and removes anything forgeable.
"""

from appliance.app import create_app
from appliance.identity.middleware import install_client_identity
from appliance.services import build_services
from appliance.settings import Settings

settings = Settings()
services = build_services(settings, traffic="interactive")
app = create_app(services)
install_client_identity(app, services.roles, settings.tls_crl)
