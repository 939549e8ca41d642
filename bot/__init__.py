"""MarketingBot: the Telegram bot, its services, AI, web app and CLI."""
