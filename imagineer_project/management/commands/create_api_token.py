from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagineer_project.tokens import api_token_create


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print it (it is shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a note to tell tokens apart")

    def handle(self, *args: Any, username: str, name: str, **options: Any) -> None:
        try:
            user = get_user_model().objects.get_by_natural_key(username)
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"No user named {username!r}.") from exc
        if not user.is_staff:
            self.stderr.write(
                f"Warning: {username} is not staff; "
                "the token can only read public items."
            )
        _, plain = api_token_create(user=user, name=name)
        self.stdout.write(plain)
