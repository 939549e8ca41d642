"""The Telegram Mini App and its HTTP API (FastAPI), served in the same event loop as the bot."""

from bot.web.app import create_web_app

__all__ = ["create_web_app"]
