#!/usr/bin/env python
"""Django's command-line utility for Imagineer."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagineer_project.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as error:
        # A bad setting (DEBUG off without SECRET_KEY, a malformed variable):
        # the message says what to fix; a traceback would bury it.
        sys.exit(f"Error: {error}")


if __name__ == "__main__":
    main()
