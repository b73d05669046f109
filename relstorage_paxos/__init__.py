"""relstorage_paxos: a RelStorage backend replicated with Multi-Paxos.

Every node keeps a full SQLite replica; every write is a record in one log whose order
Multi-Paxos decides; reads never leave the machine. See DESIGN.md in the shared notes for the
architecture and README.md for how to run it.
"""
