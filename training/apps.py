from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training and generation"

    def ready(self) -> None:
        from training import extensions

        extensions.register()
        # Register what training owns for maintenance (storage prefixes, passes).
        from training import maintenance, metrics, storage_owners  # noqa: F401
