from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "labeling"
    verbose_name = "Labeling"

    def ready(self) -> None:
        from django.conf import settings

        from imagineer_project.schedules import schedule_every
        from labeling import extensions, metrics  # noqa: F401 (registers)

        extensions.register()
        from labeling import workflow

        workflow.register()
        schedule_every(
            settings.LABELING_BATCH_POLL_MINUTES,
            "poll-message-batches",
            "labeling.tasks.poll_message_batches",
        )
