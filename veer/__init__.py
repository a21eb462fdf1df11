"""veer: lift curves off scanned paper well logs.

The package is organised one module per job (see README, "Where things live"):
``classes`` (the data contract), ``io`` (reading scans, writing files),
``synth`` (synthetic logs), ``model``/``losses``/``train`` (networks),
``metrics``, ``stitch``, ``infer`` (the segmenter), ``digitize`` (curves and
LAS), ``viz`` (figures), ``decision`` (the semantic/instance rule),
``batch`` (Dask) and ``bench`` (benchmarks).
"""

__version__ = "0.1.0"
