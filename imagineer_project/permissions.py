"""Who may do what through the API.

Anonymous callers (and signed-in users without staff status) read only public,
non-NSFW albums and images. Every mutation, and everything NSFW or private,
needs a staff user: by session (with the CSRF token) or by API token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.utils import check_csrf

if TYPE_CHECKING:
    from typing import TypeAlias

    from django.contrib.auth.models import AnonymousUser, User

    # Whoever reads: a signed-in user or an anonymous visitor (selectors and
    # querysets decide what they see). Writers are `User | None`.
    Viewer: TypeAlias = User | AnonymousUser


def is_staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user and user.is_active and user.is_staff)


def staff_required(request: HttpRequest) -> Any:
    """django-ninja auth callback for staff-only operations."""
    user = getattr(request, "user", None)
    if not user or not user.is_authenticated:
        raise HttpError(401, "Sign in as a staff user or send an API token.")
    if not is_staff(request):
        raise HttpError(403, "This needs a staff user.")
    if not getattr(request, "auth_via_token", False) and request.method not in (
        "GET",
        "HEAD",
        "OPTIONS",
    ):
        failure = check_csrf(request)
        if failure is not None:
            raise HttpError(403, "CSRF check failed: send the X-CSRFToken header.")
    return user


def person(user: User | AnonymousUser | None) -> User | None:
    """The signed-in user, or None for an anonymous one (or none): services
    record who created, wrote or uploaded something as `User | None`."""
    if user is None or not user.is_authenticated:
        return None
    return user
