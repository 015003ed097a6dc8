"""Tryton's invoice payment state for the status feedback (real trytond): number, state and
amount to pay of a posted invoice; one credited by stagepost's credit note is cancelled."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connectors.erp.base import INVOICE_PAYMENT_COLUMNS
from connectors.erp.tryton import TrytonTarget
from tests.test_tryton_target import ensure, invoice_frames

pytestmark = pytest.mark.slow


def test_invoice_payment_state_is_read_from_tryton(tryton_target: TrytonTarget) -> None:
    ensure(tryton_target)
    invoices, lines = invoice_frames("INV-1@1")
    assert tryton_target.post_invoices(invoices, lines).accepted == ["INV-1@1"]

    state = tryton_target.read_invoice_payments(["INV-1@1", "INV-404@1"])
    assert list(state.columns) == list(INVOICE_PAYMENT_COLUMNS)
    assert state["external_id"].tolist() == ["INV-1@1"]  # an unknown invoice is absent
    row = state.iloc[0]
    number = tryton_target.rpc.model(
        "account.invoice",
        "search_read",
        [("external_id", "=", "INV-1@1")],
        0,
        None,
        None,
        ["number"],
    )[0]["number"]
    assert number and row["erp_number"] == number  # Tryton's own sequence number
    assert row["status"] == "posted" and row["amount_open"] == Decimal("1875.00")
    assert isinstance(row["amount_open"], Decimal)

    credit, credit_lines = invoice_frames(
        "INV-1@1~rev", issue=dt.date(2026, 4, 2), kind="reversal", reverses="INV-1@1", sign=-1
    )
    assert tryton_target.post_invoices(credit, credit_lines).accepted == ["INV-1@1~rev"]
    state = tryton_target.read_invoice_payments(["INV-1@1", "INV-1@1~rev"])
    assert state["external_id"].tolist() == ["INV-1@1"]  # a credit note bills nothing
    assert state.iloc[0]["status"] == "cancelled" and state.iloc[0]["amount_open"] == Decimal(0)
