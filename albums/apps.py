from django.apps import AppConfig


class AlbumsConfig(AppConfig):
    name = "albums"
    verbose_name = "Albums and images"

    def ready(self) -> None:
        # Register what albums own for maintenance (storage prefixes, passes)
        # and their part of the admin home and object pages (workflow).
        from albums import maintenance, metrics, storage_owners, workflow  # noqa: F401

        workflow.register()
