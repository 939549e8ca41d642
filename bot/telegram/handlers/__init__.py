"""Thin python-telegram-bot handlers; the logic lives in bot/services."""
