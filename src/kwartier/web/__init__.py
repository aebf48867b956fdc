"""The portal: FastAPI app with the JSON API and server-rendered pages (see kwartier.web.app.create_app)."""
