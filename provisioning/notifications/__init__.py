"""Notifications (SPEC §8): each person's settings, the in-app inbox, instant emails, the daily
digest at the person's local time, and the push channels (mobile, browser, Telegram)."""
