"""`python -m bot` is the same as the `marketingbot` command."""

from bot.cli import main

main()
