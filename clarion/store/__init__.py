"""Persistence: tables, migrations and one repository per aggregate. Dialect differences live only here."""
