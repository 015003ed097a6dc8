"""Fields stagepost needs in Tryton to post idempotently and to reverse instead of editing.

- `external_id` (SQL `Unique`) on the records stagepost creates: the lookup key that
  makes a re-run or a retry after a lost answer create nothing twice, and the
  constraint that makes two concurrent runs fail instead of duplicating.
- Timesheet lines may carry `reverses`: Tryton refuses negative durations, but a
  correction must never overwrite a posted line; a reversal is therefore a separate
  line with the exact opposite duration of the line it cancels (checked here), so
  every Tryton total (work duration, effort, invoicing) nets to zero.
- Moves (`account.move`: revenue journals and WIP accruals) carry their journal's identity
  and version, its type and, on a reversal, the move it reverses; their lines carry the
  project and the line's role (wip, revenue, unbilled, deferred) whatever the chart calls
  the account, so reconciliation reads them back per project.
- Projects set up from a won CRM deal carry the deal's id and terms (billing method, dates,
  contract value, manager); the budget hours are the work's `effort_duration`.
- `accounting_date` books a line into a period other than its work date's month (a
  reversal of a line from a closed month goes into the open one), and a line from
  stagepost is refused with Tryton's own message when that period is not open.
- An expense line is an `account.move` of the expense journal (see
  `connectors/erp/tryton_expenses.py`): the move carries the expense's identity, the
  move it reverses, and what the expense says beyond its two lines (project, employee,
  category, tax, markup and rebilled amount, receipt), so it can be read back and
  reconciled line by line.
"""

from trytond.i18n import gettext
from trytond.model import Unique, fields
from trytond.model.exceptions import ValidationError
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Bool, Eval, If, TimeDelta


class ExternalIdMixin:
    """A unique, writable external ID that copies never inherit."""

    __slots__ = ()
    external_id = fields.Char(
        "External ID", strip=False, help="The key of this record in stagepost's ledger."
    )

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints.append(
            (
                "external_id_unique",
                Unique(t, t.external_id),
                "stagepost.msg_external_id_unique",
            )
        )

    @classmethod
    def copy(cls, records, default=None):
        default = dict(default) if default is not None else {}
        default.setdefault("external_id", None)
        return super().copy(records, default=default)


class SourceMixin(ExternalIdMixin):
    """Identity and version of the source document behind a posted record."""

    __slots__ = ()
    source_id = fields.Char("Source ID", strip=False)
    source_version = fields.Integer("Source Version")

    @classmethod
    def copy(cls, records, default=None):
        default = dict(default) if default is not None else {}
        default.setdefault("source_id", None)
        default.setdefault("source_version", None)
        return super().copy(records, default=default)


class Party(ExternalIdMixin, metaclass=PoolMeta):
    __name__ = "party.party"


class Employee(ExternalIdMixin, metaclass=PoolMeta):
    __name__ = "company.employee"


class Work(ExternalIdMixin, metaclass=PoolMeta):
    """A project set up from a won CRM deal keeps the deal's terms (the budget hours are
    Tryton's own `effort_duration`)."""

    __name__ = "project.work"
    deal_id = fields.Char("CRM Deal", strip=False)
    billing_method = fields.Char("Billing Method")
    start_date = fields.Date("Start Date")
    end_date = fields.Date("End Date")
    contract_value = fields.Numeric("Contract Value", digits=(18, 2))
    project_manager = fields.Char("Project Manager")

    @classmethod
    def copy(cls, works, default=None):
        default = dict(default) if default is not None else {}
        default.setdefault("deal_id", None)
        return super().copy(works, default=default)


class TimesheetLine(SourceMixin, metaclass=PoolMeta):
    __name__ = "timesheet.line"
    reverses = fields.Many2One(
        "timesheet.line",
        "Reverses",
        ondelete="RESTRICT",
        help="The line this one cancels, with the opposite duration.",
    )
    accounting_date = fields.Date(
        "Accounting Date", help="Books the line into this date's period instead of its date's."
    )

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints.append(
            ("reverses_unique", Unique(t, t.reverses), "stagepost.msg_reversed_once")
        )
        # A reversal is the only line allowed a negative duration.
        cls.duration.domain = [
            If(
                Bool(Eval("reverses")),
                ("duration", "<=", TimeDelta()),
                ("duration", ">=", TimeDelta()),
            )
        ]

    @classmethod
    def copy(cls, lines, default=None):
        default = dict(default) if default is not None else {}
        default.setdefault("reverses", None)
        default.setdefault("accounting_date", None)
        return super().copy(lines, default=default)

    @classmethod
    def check_duration(cls, lines, field_names=None):
        super().check_duration([line for line in lines if not line.reverses], field_names)

    @classmethod
    def validate_fields(cls, lines, field_names):
        super().validate_fields(lines, field_names)
        cls.check_reversal(lines, field_names)
        cls.check_accounting_period(lines, field_names)

    @classmethod
    def check_reversal(cls, lines, field_names=None):
        "A reversal cancels exactly one non-reversal line: same employee and work, opposite time."
        if field_names and not (field_names & {"reverses", "duration", "employee", "work"}):
            return
        for line in lines:
            original = line.reverses
            if not original:
                continue
            if original.reverses:
                raise ValidationError(
                    gettext("stagepost.msg_reverse_reversal", line=original.rec_name)
                )
            if (
                line.duration != -original.duration
                or line.employee != original.employee
                or line.work != original.work
            ):
                raise ValidationError(
                    gettext(
                        "stagepost.msg_reversal_mismatch",
                        line=line.rec_name,
                        original=original.rec_name,
                    )
                )

    @classmethod
    def check_accounting_period(cls, lines, field_names=None):
        "Lines from stagepost go only into open periods; Period.find raises Tryton's message."
        if field_names and not (
            field_names & {"date", "accounting_date", "external_id", "company"}
        ):
            return
        Period = Pool().get("account.period")
        for line in lines:
            if not line.external_id:
                continue
            Period.find(line.company, date=line.accounting_date or line.date)


class Invoice(SourceMixin, metaclass=PoolMeta):
    __name__ = "account.invoice"
    reverses = fields.Many2One(
        "account.invoice",
        "Reverses",
        ondelete="RESTRICT",
        help="The invoice this credit note cancels.",
    )
    project = fields.Many2One("project.work", "Project", ondelete="RESTRICT")

    @classmethod
    def copy(cls, invoices, default=None):
        default = dict(default) if default is not None else {}
        default.setdefault("reverses", None)
        return super().copy(invoices, default=default)


class Move(SourceMixin, metaclass=PoolMeta):
    __name__ = "account.move"
    reverses = fields.Many2One(
        "account.move",
        "Reverses",
        ondelete="RESTRICT",
        help="The move this one cancels (an expense's, a journal's), with the opposite amounts.",
    )
    stagepost_type = fields.Char("Stagepost Journal Type", help="revenue | wip_accrual")
    expense_date = fields.Date("Expense Date")
    expense_project = fields.Many2One("project.work", "Expense Project", ondelete="RESTRICT")
    expense_employee = fields.Many2One("company.employee", "Expense Employee", ondelete="RESTRICT")
    expense_category = fields.Char("Expense Category")
    expense_tax_amount = fields.Numeric("Expense Tax Amount", digits=(16, 2))
    expense_markup_percent = fields.Numeric("Expense Markup %", digits=(16, 4))
    expense_rebill_amount = fields.Numeric("Expense Rebill Amount", digits=(16, 2))
    expense_billable = fields.Boolean("Expense Billable")
    expense_reimbursable = fields.Boolean("Expense Reimbursable")
    expense_receipt = fields.Char("Expense Receipt")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints.append(
            ("reverses_unique", Unique(t, t.reverses), "stagepost.msg_move_reversed_once")
        )

    @classmethod
    def copy(cls, moves, default=None):
        default = dict(default) if default is not None else {}
        default.setdefault("reverses", None)
        default.setdefault("stagepost_type", None)
        return super().copy(moves, default=default)


class MoveLine(metaclass=PoolMeta):
    __name__ = "account.move.line"
    stagepost_project = fields.Char("Stagepost Project")
    stagepost_role = fields.Char("Stagepost Role", help="wip | revenue | unbilled | deferred")
