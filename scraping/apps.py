from django.apps import AppConfig


class ScrapingConfig(AppConfig):
    name = "scraping"
    verbose_name = "Scraping"

    def ready(self) -> None:
        # Register the crawl log's retention pass and the admin workflow's part.
        from scraping import (
            maintenance,  # noqa: F401
            workflow,
        )

        workflow.register()
