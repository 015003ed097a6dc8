"""Tryton module `stagepost`: external IDs and reversals for lines posted by stagepost.

trytond finds it through the `trytond.modules` entry point `stagepost`; the classes
to register are listed in `tryton.cfg` (Tryton 8.2 style), so nothing happens here.
"""
