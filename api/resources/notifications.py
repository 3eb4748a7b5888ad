"""The caller's notification settings, in-app inbox and push devices (/v1/me/notifications,
/v1/me/inbox, /v1/me/devices)."""

from __future__ import annotations

import falcon

from api.resources import body, int_param, shaped
from provisioning.notifications import devices, inbox, preferences


class NotificationSettings:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shaped(preferences.notification_settings(req.context.session,
                                                              req.context.actor))

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shaped(preferences.change_notification_settings(
            req.context.session, req.context.actor, body(req)))


class Inbox:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = inbox.list_inbox(req.context.session, req.context.actor, req.get_param("cursor"),
                                int_param(req, "limit"),
                                unread_only=req.get_param_as_bool("unread") or False)
        resp.media = {"items": [shaped(item) for item in page.items],
                      "next_cursor": page.next_cursor, "unread": page.unread}


class InboxEntryRead:
    def on_post(self, req: falcon.Request, resp: falcon.Response, notification_id: int) -> None:
        resp.media = shaped(inbox.mark_read(req.context.session, req.context.actor,
                                            notification_id))


class InboxRead:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        marked = inbox.mark_many_read(req.context.session, req.context.actor, body(req))
        resp.media = {"marked": marked}


class Devices:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        items = devices.list_devices(req.context.session, req.context.actor)
        resp.media = {"items": [shaped(item) for item in items], "next_cursor": None}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        device, new = devices.register_device(req.context.session, req.context.actor, body(req))
        resp.media = shaped(device)
        resp.status = falcon.HTTP_201 if new else falcon.HTTP_200


class Device:
    def on_delete(self, req: falcon.Request, resp: falcon.Response, device_id: int) -> None:
        devices.remove_device(req.context.session, req.context.actor, device_id)
        resp.status = falcon.HTTP_204


class WebPushKey:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = devices.web_push_key()
