from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # checks: the template check; metrics: counts sends, registers the queue-depth gauge.
        from notifications import checks, metrics  # noqa: F401
        from notifications.receivers import receivers_connect

        receivers_connect()  # SES events (django-ses signals) -> notifications.feedback
