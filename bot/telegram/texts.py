"""Texts more than one Telegram handler sends (Russian: partners read them)."""

TEXT_UNAVAILABLE = "Сервис временно недоступен. Попробуйте, пожалуйста, ещё раз через несколько минут."
