"""System check: the email templates are whole (pybars3 silently truncates an unclosed block)."""

from django.core import checks

from notifications import rendering


@checks.register()
def email_templates_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    return [
        checks.Error(problem, id="notifications.E001", hint="Fix templates/emails/.")
        for problem in rendering.templates_check()
    ]
