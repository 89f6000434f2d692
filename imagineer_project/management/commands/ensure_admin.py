from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Make sure a superuser exists. The first time, create one with a random "
        "password (or IMAGINEER_ADMIN_PASSWORD), print it and keep it in "
        "var/admin-password.txt (readable by you only)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        password_file = settings.VAR_DIR / "admin-password.txt"
        existing = users.objects.filter(is_superuser=True, is_active=True).first()
        if existing is not None:
            hint = (
                f" (first password in {password_file})"
                if password_file.exists()
                else ""
            )
            self.stdout.write(
                f"Admin account: {existing.get_username()}{hint}. "
                f"Change it with: manage.py changepassword {existing.get_username()}"
            )
            return
        username = os.environ.get("IMAGINEER_ADMIN_USER", "admin")
        password = os.environ.get("IMAGINEER_ADMIN_PASSWORD") or secrets.token_urlsafe(
            12
        )
        users.objects.create_superuser(username=username, email="", password=password)
        password_file.write_text(f"{username}\n{password}\n")
        password_file.chmod(0o600)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created admin account '{username}' with password: {password}\n"
                f"(also saved in {password_file}; change it with "
                f"manage.py changepassword {username})"
            )
        )
