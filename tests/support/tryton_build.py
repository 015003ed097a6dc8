"""Build the Tryton template database the Tryton tests copy (run in a subprocess).

Usage: python -m tests.support.tryton_build <config file> <database name> <fiscal year>

The database file must already hold the activated modules (`trytond-admin -u`);
this adds the accounting setup an invoice needs, with Tryton's own test helpers
through proteus: currency, company, chart of accounts, a fiscal year with monthly
periods and invoice sequences, a payment term, and an hourly service product.
It runs in its own process because proteus' trytond backend keeps a global pool
and configuration that must not leak into the pytest process.
"""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal

#: Names the fixtures and tests rely on.
COMPANY_NAME = "Stagepost Consulting"
CURRENCY_CODE = "USD"
PRODUCT_NAME = "Consulting hour"
PRODUCT_LIST_PRICE = Decimal("100.00")
#: Accounts revenue journals post to (docs/revenue.md's defaults), by code: name and the kind
#: of account of the minimal chart whose type they take.
REVENUE_ACCOUNTS = {
    "1460": ("Work in progress", "receivable"),
    "1450": ("Unbilled receivable", "receivable"),
    "2900": ("Deferred revenue", "payable"),
    "4000": ("Revenue (recognized)", "revenue"),
    # intercompany pairs (docs/intercompany.md's defaults)
    "5400": ("Intercompany cost of services", "expense"),
    "2400": ("Intercompany payable", "payable"),
    "1400": ("Intercompany receivable", "receivable"),
    "4400": ("Intercompany revenue", "revenue"),
}


def build(config_file: str, database: str, year: int) -> None:
    """Set up company, accounting and a service product in an activated database."""
    from proteus import Model
    from proteus import config as pconfig
    from trytond.modules.account.tests.tools import (
        create_chart,
        create_fiscalyear,
        get_accounts,
    )
    from trytond.modules.account_invoice.tests.tools import (
        create_payment_term,
        set_fiscalyear_invoice_sequences,
    )
    from trytond.modules.company.tests.tools import create_company
    from trytond.modules.currency.tests.tools import get_currency

    pconfig.set_trytond(database=database, config_file=config_file)
    Party = Model.get("party.party")
    party = Party(name=COMPANY_NAME)
    party.save()
    create_company(party=party, currency=get_currency(CURRENCY_CODE))
    create_chart()
    accounts = get_accounts()

    Account = Model.get("account.account")
    for code, (name, kind) in REVENUE_ACCOUNTS.items():
        Account(name=name, code=code, type=accounts[kind].type, parent=accounts[kind].parent).save()

    fiscalyear = set_fiscalyear_invoice_sequences(
        create_fiscalyear(today=(dt.date(year, 1, 1), dt.date(year, 12, 31)))
    )
    fiscalyear.click("create_period")

    payment_term = create_payment_term()
    payment_term.save()

    Category = Model.get("product.category")
    category = Category(name="Services", accounting=True)
    category.account_revenue = accounts["revenue"]
    category.account_expense = accounts["expense"]
    category.save()

    Uom = Model.get("product.uom")
    hour = Uom.find([("name", "=", "Hour")])[0]
    Template = Model.get("product.template")
    template = Template(name=PRODUCT_NAME, type="service", default_uom=hour)
    template.list_price = PRODUCT_LIST_PRICE
    template.account_category = category
    template.save()
    if not template.products:
        raise RuntimeError("Tryton did not create the service product")


if __name__ == "__main__":
    build(sys.argv[1], sys.argv[2], int(sys.argv[3]))
