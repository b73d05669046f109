"""The conformance tier (DESIGN.md §testing, tier 3): ZODB's storage test mixins and
RelStorage's generic adapter suite, run by zope.testrunner in subprocesses that
``test_conformance.py`` starts and counts."""
