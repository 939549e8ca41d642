"""What the `marketingbot` CLI (bot/cli.py) does besides running the bot: the go-live checklist, the start
preflight, the outbox admin, the sheets commands. Each opens what it needs and closes it; none runs the bot."""
