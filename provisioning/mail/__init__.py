"""Email: templates rendered per language, a lean MIME builder and the SMTP adapter."""
