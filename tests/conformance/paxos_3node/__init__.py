"""ZODB's storage mixins and the MVCC tests on 3-node clusters, commits through one node
and loads through another (zope.testrunner finds ``tests.py`` here)."""
