"""The HTTP edge: Knock's v1 API as a Starlette application."""
