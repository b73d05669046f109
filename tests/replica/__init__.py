"""Unit and property tests of relstorage_paxos.replica."""
