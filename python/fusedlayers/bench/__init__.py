"""The benchmark suite: fused layers against stock Keras, timed alternately in one process.

Run it with the `fusedlayers-bench` console script (or `python -m fusedlayers.bench`).
"""
