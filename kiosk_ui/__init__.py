"""The hotel kiosk's touch UI: a FastAPI app (create_app) serving local static files and the session API."""
