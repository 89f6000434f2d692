from django.apps import AppConfig


class LegacyConfig(AppConfig):
    name = "legacy"
    verbose_name = "Legacy import"

    def ready(self) -> None:
        from legacy import extensions

        extensions.register()
        from legacy import workflow

        workflow.register()
