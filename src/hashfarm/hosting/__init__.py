"""Hosting: customers, their contracts and machines, and the monthly bills (docs/hosting.md).

Pure billing rules (`contracts`, `power`, `invoice`, `money`, `inputs`) plus their SQL store
(`schema`, `store`) and the bill run (`billing`). Power samples, mined satoshis and BTC
prices come in through protocols declared here (`power.PowerSource`, `sources.MinedSats`,
`sources.BtcPrices`); `cli` wires the fleet's (or a CSV file's) implementation in.
"""
