"""The admin's look: django-admin-interface's theme row, in reengage's colours.

The theme keeps Django's own admin markup (so our templates and the strict
Content-Security-Policy keep working) and adds sticky save buttons, sticky
pagination and drop-down list filters, which matter on a laptop screen. Related
objects open in Django's usual popup window, not in the theme's modal: the modal
frames admin pages, which `X-Frame-Options: DENY` / `frame-ancestors 'none'` forbid.

The theme is a database row, so it is (re)created after every `migrate` and
`flush`, like the Marketers group; a superuser's later edits to it are kept.
"""

from __future__ import annotations

from django.apps import apps as global_apps

THEME_NAME = "reengage"
THEME = {
    "title": "reengage",
    "title_visible": True,
    "title_color": "#FFFFFF",
    "logo_visible": False,
    "env_visible_in_header": False,
    "env_visible_in_favicon": False,
    "language_chooser_active": False,  # one language, no LocaleMiddleware
    "css_header_background_color": "#1E293B",
    "css_header_text_color": "#CBD5E1",
    "css_header_link_color": "#FFFFFF",
    "css_header_link_hover_color": "#C7D2FE",
    "css_module_background_color": "#4F46E5",
    "css_module_background_selected_color": "#EEF2FF",
    "css_module_text_color": "#FFFFFF",
    "css_module_link_color": "#FFFFFF",
    "css_module_link_selected_color": "#FDE68A",
    "css_module_link_hover_color": "#E0E7FF",
    "css_module_rounded_corners": True,
    "css_generic_link_color": "#4338CA",
    "css_generic_link_hover_color": "#312E81",
    "css_generic_link_active_color": "#1E1B4B",
    "css_save_button_background_color": "#4F46E5",
    "css_save_button_background_hover_color": "#4338CA",
    "css_save_button_text_color": "#FFFFFF",
    "css_delete_button_background_color": "#DC2626",
    "css_delete_button_background_hover_color": "#B91C1C",
    "css_delete_button_text_color": "#FFFFFF",
    "related_modal_active": False,
    "list_filter_dropdown": True,
    "list_filter_highlight": True,
    "list_filter_sticky": True,
    "list_filter_removal_links": True,
    "foldable_apps": True,
    "show_fieldsets_as_tabs": False,
    "show_inlines_as_tabs": False,
    "recent_actions_visible": True,
    "form_submit_sticky": True,
    "form_pagination_sticky": True,
}


def ensure_theme(apps=global_apps, using: str = "default") -> bool:
    """Create and activate the reengage theme unless it exists. True if it was created."""
    from admin_interface.cache import del_cached_active_theme

    Theme = apps.get_model("admin_interface", "Theme")
    if Theme.objects.using(using).filter(name=THEME_NAME).exists():
        return False
    Theme.objects.using(using).filter(active=True).update(active=False)
    Theme.objects.using(using).create(name=THEME_NAME, active=True, **THEME)
    del_cached_active_theme()
    return True


def ensure_after_migrate(sender, using: str = "default", apps=global_apps, **kwargs) -> None:
    """post_migrate: once admin_interface's table exists (the migration state knows it)."""
    try:
        apps.get_model("admin_interface", "Theme")
    except LookupError:
        return
    ensure_theme(apps, using=using)
