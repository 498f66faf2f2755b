"""View modules: one blueprint per area, discovered by ``web.pages``."""
