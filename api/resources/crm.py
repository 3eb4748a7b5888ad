"""Records members own: leads, contacts, customers and tasks; notes and messages on leads."""

from __future__ import annotations

import falcon

from api.resources import body, int_param, page_body, page_query
from provisioning.crm import notes, participants, records


class Records:
    """One kind's list and the creation of a record of it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = page_body(records.list_records(
            req.context.session, req.context.actor, account_id, self.kind,
            int_param(req, "responsible_id"), *page_query(req)))

    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        record = records.create_record(req.context.session, req.context.actor, account_id,
                                       self.kind, body(req))
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/accounts/{account_id}/{self.kind}/{record['id']}"
        resp.media = record


class Record:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int,
               record_id: int) -> None:
        resp.media = records.get_record(req.context.session, req.context.actor, account_id,
                                        self.kind, record_id)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                 record_id: int) -> None:
        resp.media = records.update_record(req.context.session, req.context.actor, account_id,
                                           self.kind, record_id, body(req))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                  record_id: int) -> None:
        records.delete_record(req.context.session, req.context.actor, account_id, self.kind,
                              record_id)
        resp.status = falcon.HTTP_204


class LeadEntries:
    """A lead's notes or its messages: listed oldest first, written by the caller."""

    services = {"notes": (notes.list_notes, notes.add_note),
                "messages": (notes.list_messages, notes.add_message)}

    def __init__(self, entries: str) -> None:
        self.listed, self.added = self.services[entries]

    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int,
               record_id: int) -> None:
        resp.media = page_body(self.listed(req.context.session, req.context.actor, account_id,
                                           record_id, *page_query(req)))

    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                record_id: int) -> None:
        resp.status = falcon.HTTP_201
        resp.media = self.added(req.context.session, req.context.actor, account_id, record_id,
                                body(req))


class Participants:
    """The free users taking part in a lead or a customer (R9)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int,
               record_id: int) -> None:
        resp.media = page_body(participants.list_participants(
            req.context.session, req.context.actor, account_id, self.kind, record_id,
            *page_query(req)))

    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                record_id: int) -> None:
        resp.status = falcon.HTTP_201
        resp.media = participants.add_participant(req.context.session, req.context.actor,
                                                  account_id, self.kind, record_id, body(req))


class Participant:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def on_delete(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                  record_id: int, member_id: int) -> None:
        participants.remove_participant(req.context.session, req.context.actor, account_id,
                                        self.kind, record_id, member_id)
        resp.status = falcon.HTTP_204
