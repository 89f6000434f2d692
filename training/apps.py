from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training and generation"

    def ready(self) -> None:
        from training import extensions

        extensions.register()
        # Register what training owns for maintenance (storage prefixes, passes)
        # and its part of the admin home and object pages (workflow).
        from training import maintenance, metrics, storage_owners, workflow  # noqa: F401

        workflow.register()
