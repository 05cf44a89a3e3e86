"""halodb: the Halo DB Integrator in Python.

Runs Halo's integration syncs on a schedule and writes the results straight into the Halo
database through an embedded "built-in API" (``halodb.halo``), never through the Halo web API.
"""

__version__ = "0.1.0"
