"""Admin hardening: the admin site with optional two-factor login, and the
marketers' permission group. Login throttling (django-axes) and the
Content-Security-Policy (django-csp) are configured in settings; see
docs/security.md."""
