"""Bill runs beyond one machine: a period's inputs as Parquet partitions, settled on Dask workers.

The driver exports each group of connections (a connection with its metering points stays in one
group) to a self-contained partition folder; workers run the same settlement functions as the local
``kwartier settle`` on each partition and return per-meter line totals; the driver rounds, adds VAT
and posts them to the ledger with the local path's code. See :func:`kwartier.scale.run.settle_distributed`.
"""

from kwartier.scale.run import settle_distributed

__all__ = ["settle_distributed"]
