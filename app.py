"""livegate's Flask application.

``create_app`` builds the app; the module-level ``app`` is what
``gunicorn -c gunicorn.conf.py app:app`` serves. Routes live in blueprints
under ``workers/routes``.
"""

from __future__ import annotations

from flask import Flask

from livegate.settings import Settings
from workers.routes import register_blueprints
from workers.routes.gateway import Gateway


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.json.compact = True
    app.extensions["livegate"] = Gateway.from_settings(settings)
    register_blueprints(app)
    return app


app = create_app()
