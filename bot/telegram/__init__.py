"""The Telegram front door: handlers, messenger, rate limiter, update ordering, inbox, drafts, staff chat.

Like bot/web/ for the Mini App, this package adapts one channel to the services; no logic of its own.
"""
