"""kubesvc: Kubernetes Service networking in Python.

One hub (the API server) and spokes that only talk to it: controllers, the node
agent, the service proxy and cluster DNS. See DESIGN.md beside the seed.
"""

__version__ = "0.1.0"
