from django.core.management.base import BaseCommand

from reengage.security.marketers import GROUP_NAME, sync_marketers_group


class Command(BaseCommand):
    help = f"Create the {GROUP_NAME} group if needed and grant it every permission it should have."

    def handle(self, *args, **options) -> None:
        added = sync_marketers_group()
        if added:
            self.stdout.write(f"{GROUP_NAME}: granted {', '.join(added)}")
        else:
            self.stdout.write(f"{GROUP_NAME}: already complete")
