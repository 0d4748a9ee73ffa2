"""Mining economics, pure (no I/O): hashprice, one machine's day, payback over time with
difficulty epochs and halvings, Monte Carlo odds, solo odds, retargets and the shipped data.

`cli/calc/` wires it to a node, flags or the shipped data; see docs/calculator.md.
"""
