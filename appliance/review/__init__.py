"""Human review of low-confidence results: the queue, and reviews added to a document's history.

``init_app`` wires the review service and its blueprint into an app built by
``appliance.app.create_app`` (it needs the engine, the taxonomy and the audit sink from there).
"""

from __future__ import annotations

from flask import Flask

from appliance.classification.views import HISTORY_SOURCES_KEY
from appliance.review import views
from appliance.review.services import ReviewService


def init_app(app: Flask) -> None:
    app.extensions[views.SERVICE_KEY] = ReviewService(
        engine=app.extensions["appliance.engine"],
        taxonomy=app.extensions["appliance.taxonomy"],
        audit_sink=app.extensions["appliance.audit_sink"],
    )
    app.extensions.setdefault(HISTORY_SOURCES_KEY, []).append(views.history_items)
    app.register_blueprint(views.bp)
