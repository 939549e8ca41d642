"""Texts more than one Telegram handler sends (Russian: partners read them)."""

TEXT_UNAVAILABLE = "Сервис временно недоступен. Попробуйте, пожалуйста, ещё раз через несколько минут."
# How a refusal to someone not (yet) authorized ends: the way in.
TEXT_AUTHORIZE_FIRST = "Сначала подтвердите номер телефона: отправьте /start."
