from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training and generation"

    def ready(self) -> None:
        from training import extensions

        extensions.register()
