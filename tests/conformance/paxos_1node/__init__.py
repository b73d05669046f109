"""RelStorage's generic suite and ZODB's mixins on relstorage_paxos, 1-node clusters
(zope.testrunner finds ``tests.py`` here)."""
