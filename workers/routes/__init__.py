"""Flask blueprints of the gateway. A new route goes in a blueprint here
and is registered in ``register_blueprints``."""

from __future__ import annotations

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter


class ChannelConverter(BaseConverter):
    """Takes the rest of the path, line breaks included, so that an invalid
    channel name reaches the route and gets a 400 naming it instead of a 404."""

    regex = r"[\s\S]+"
    weight = 200
    # Werkzeug matches segment by segment unless a converter declares that it spans "/".
    part_isolating = False


def register_blueprints(app: Flask) -> None:
    from workers.routes.errors import json_error

    app.url_map.converters["channel"] = ChannelConverter

    @app.errorhandler(HTTPException)
    def http_error_as_json(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        return json_error(error.code or 500, code, error.description or error.name)

    from workers.routes.aliases import aliases
    from workers.routes.channels import channels
    from workers.routes.health import health
    from workers.routes.metrics import metrics
    from workers.routes.pages import pages
    from workers.routes.publish import publish
    from workers.routes.status import status
    from workers.routes.stream import stream

    for blueprint in (stream, channels, aliases, publish, health, metrics, status, pages):
        app.register_blueprint(blueprint)

    from workers.routes.cors import install_cors

    settings = app.extensions["livegate"].settings
    install_cors(app, settings.cors_origins, settings.cors_max_age)
