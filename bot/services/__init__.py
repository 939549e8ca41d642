"""Application services: the logic behind the Telegram handlers, the web API and the pollers."""
