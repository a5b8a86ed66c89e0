"""gRPC stubs generated from PRL's proto/ when the package is built (see setup.py).

Import the messages through prl.v1; these modules are an implementation detail.
"""
