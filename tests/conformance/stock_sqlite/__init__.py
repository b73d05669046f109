"""The stock anchor: RelStorage's own SQLite suite with the ZODB-6 alias shim, to tell our
failures from the suite's own (zope.testrunner finds ``tests.py`` here)."""
