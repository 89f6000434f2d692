from django.apps import AppConfig


class ScrapingConfig(AppConfig):
    name = "scraping"
    verbose_name = "Scraping"

    def ready(self) -> None:
        # Register the crawl log's retention pass.
        from scraping import maintenance  # noqa: F401
