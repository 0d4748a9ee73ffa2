"""`hashfarm miner`: a Stratum V1 client and a solo miner around pluggable hashing backends.

protocol (sans-I/O session) -> client (asyncio shell) -> engine (scans off the event loop)
-> workgen (which headers each thread scans); solo builds work from getblocktemplate.
See docs/miner.md.
"""
