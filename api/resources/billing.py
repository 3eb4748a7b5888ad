"""Billing: the plan and seats, what each member takes, events, previews and changes."""

from __future__ import annotations

import falcon

from api.resources import body, page_body, page_query
from provisioning.billing import account, changes


class Billing:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = account.get_billing(req.context.session, req.context.actor, account_id)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = changes.change_billing(req.context.session, req.context.actor,
                                            account_id, body(req))


class BillingEvents:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = page_body(account.list_events(
            req.context.session, req.context.actor, account_id, *page_query(req)))


class BillingSeats:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = page_body(account.list_seats(
            req.context.session, req.context.actor, account_id, *page_query(req)))


class BillingPreview:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = account.preview(req.context.session, req.context.actor, account_id,
                                     req.get_param("add"))


class BillingRecalculation:
    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        job = changes.start_recalculation(req.context.session, req.context.actor, account_id)
        resp.status = falcon.HTTP_202
        resp.location = f"/v1/jobs/{job['id']}"
        resp.media = {"job": job}
