from django.apps import AppConfig


class AlbumsConfig(AppConfig):
    name = "albums"
    verbose_name = "Albums and images"

    def ready(self) -> None:
        # Register what albums own for maintenance (storage prefixes, passes).
        from albums import maintenance, metrics, storage_owners  # noqa: F401
