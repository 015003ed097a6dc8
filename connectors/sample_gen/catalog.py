"""Fixed vocabularies of the sample PSA: legal entities, roles, rates, tasks, names.

Kept apart from the generating code so the realism knobs sit in one place.
Names deliberately include commas, quotes, apostrophes and non-ASCII letters:
real exports do, and readers must cope.
"""

from __future__ import annotations

ENTITIES: tuple[str, ...] = ("US01", "DE01", "GB01")
CURRENCIES: tuple[str, ...] = ("USD", "EUR", "GBP")
ZONES: tuple[str, ...] = ("America/New_York", "Europe/Berlin", "Europe/London")
ENTITY_WEIGHTS: tuple[float, ...] = (0.45, 0.35, 0.20)
PAYMENT_TERMS_DAYS: tuple[int, ...] = (30, 14, 30)

ROLES: tuple[str, ...] = ("consultant", "senior", "manager", "partner")
ROLE_WEIGHTS: tuple[float, ...] = (0.50, 0.30, 0.15, 0.05)
# Standard bill rates per entity x role, whole currency units (so amounts are exact).
BASE_RATES: tuple[tuple[int, ...], ...] = (
    (150, 195, 240, 320),
    (120, 160, 200, 280),
    (110, 145, 185, 250),
)
# Cost rates per entity x role, in cents.
BASE_COST_CENTS: tuple[tuple[int, ...], ...] = (
    (6_000, 8_000, 10_000, 14_000),
    (5_200, 7_000, 9_000, 12_500),
    (4_800, 6_500, 8_200, 11_500),
)

BILLING_METHODS: tuple[str, ...] = ("time_and_materials", "fixed_fee", "milestone", "non_billable")
TM, FIXED, MILESTONE, NON_BILLABLE = range(4)
PROJECT_STATUSES: tuple[str, ...] = ("open", "on_hold", "closed")
OPEN, ON_HOLD, CLOSED = range(3)

APPROVAL_STATUSES: tuple[str, ...] = ("draft", "submitted", "approved", "rejected")
DRAFT, SUBMITTED, APPROVED, REJECTED = range(4)

# Task catalog: the first N_BILLABLE_TASKS codes are billable, the rest never are.
TASK_CODES: tuple[str, ...] = (
    "ANL", "DES", "BLD", "TST", "PMO", "TRN", "SUP",
    "MTG", "PRE", "ADM", "KNW",
)  # fmt: skip
TASK_NAMES: tuple[str, ...] = (
    "Analysis",
    "Design",
    "Build and configuration",
    "Testing",
    "Project management",
    "Training",
    "Support",
    "Internal meeting",
    "Pre-sales",
    "Administration",
    "Knowledge sharing",
)
N_BILLABLE_TASKS = 7
N_NB_TASKS = len(TASK_CODES) - N_BILLABLE_TASKS
# Non-billable tasks a client project may carry (knowledge sharing is internal only).
N_CLIENT_NB_TASKS = 3

DESCRIPTION_TOPICS: tuple[str, ...] = (
    "client workshop",
    "follow-up with stakeholders",
    'review of the "as-is" process',
    "Abstimmung mit Fachbereich",
    "status call, weekly",
    "documentation update",
    "Workshop in München",
    "réunion de lancement",
    "fixes after UAT feedback",
    "data migration checks",
    "sprint planning",
    "onboarding of new team members",
    "quality review",
    "steering committee preparation",
    "coordination, e-mails",
    "interface mapping",
)

FIRST_NAMES: tuple[tuple[str, ...], ...] = (
    ("James", "Mary", "Robert", "Patricia", "Michael", "Jennifer", "David", "Linda",
     "William", "Elizabeth", "Carlos", "Maria", "Wei", "Priya", "Jamal", "Aisha"),
    ("Lukas", "Anna", "Jürgen", "Sophie", "Björn", "Lea", "Maximilian", "Hannah",
     "Jörg", "Marie", "Felix", "Zoë", "Mehmet", "Katarzyna", "Stefan", "Ümit"),
    ("Oliver", "Amelia", "Harry", "Olivia", "George", "Isla", "Jack", "Emily",
     "Rhys", "Siobhán", "Callum", "Niamh", "Arjun", "Fatima", "Thomas", "Grace"),
)  # fmt: skip
LAST_NAMES: tuple[tuple[str, ...], ...] = (
    ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
     "Rodriguez", "Martinez", "Nguyen", "Patel", "O'Neil", "Kim", "Lee", "Walker"),
    ("Müller", "Schmidt", "Schneider", "Fischer", "Weiß", "Schäfer", "Groß", "Wagner",
     "Becker", "Hoffmann", "Yılmaz", "Nowak", "Köhler", "Zimmermann", "Krüger", "Braun"),
    ("Taylor", "Davies", "Evans", "Thomas", "Roberts", "O'Connor", "Wright", "Hughes",
     "Edwards", "Green", "Hall", "Wood", "Clarke", "Khan", "Ali", "Smith-Jones"),
)  # fmt: skip

CUSTOMER_STEMS: tuple[str, ...] = (
    "Northwind", "Contoso", "Fabrikam", "Globex", "Initech", "Umbrella", "Acme",
    "Tyrell", "Cyberdyne", "Hooli", "Vandelay", "Wonka", "Oceanic", "Stark",
    "Wayne", "Soylent", "Gringotts", "Blue Harbor", "Silver Birch", "Red Kite",
    "Alpenblick", "Nordlicht", "Rheinwerk", "Thames Valley", "Highland", "Lakeside",
)  # fmt: skip
CUSTOMER_SECTORS: tuple[str, ...] = (
    "Logistics", "Health", "Energy", "Retail", "Foods", "Bank", "Insurance",
    "Motors", "Pharma", "Telecom", "Media", "Utilities",
)  # fmt: skip
CUSTOMER_SUFFIXES: tuple[tuple[str, ...], ...] = (
    ("Inc.", "LLC", "Corp."),
    ("GmbH", "AG", "SE"),
    ("Ltd", "plc", "LLP"),
)
# Awkward but real-looking names; a few customers get one of these.
ODD_CUSTOMER_NAMES: tuple[str, ...] = (
    "Smith, Jones & Partners LLP",
    'The "Blue Door" Company Inc.',
    "Müller & Söhne GmbH",
    "O'Brien Holdings, Ltd",
    "Société Générale d'Études SA",
)
ENGAGEMENTS: tuple[str, ...] = (
    "ERP rollout", "Audit support", "Cloud migration", "Data platform",
    "Managed services", "CRM implementation", "Cost reduction programme",
    "Payroll upgrade", "Cyber security review", "Treasury redesign",
)  # fmt: skip
INTERNAL_PROJECTS: tuple[str, ...] = (
    "Internal administration",
    "Training & certification",
    "Business development",
    "Knowledge management",
)
MILESTONES: tuple[str, ...] = (
    "Milestone 1: Kick-off",
    "Milestone 2: Design sign-off",
    "Milestone 3: Go-live",
    "Milestone 4: Hypercare complete",
)
MONTH_NAMES: tuple[str, ...] = (
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
)  # fmt: skip
