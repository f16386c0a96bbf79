from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """django.contrib.admin, with reengage's site (two-factor for staff who enrolled)
    as `admin.site`, so every `@admin.register` keeps working unchanged."""

    default_site = "reengage.security.admin_site.AdminSite"
