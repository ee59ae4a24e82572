"""The review web application (``cytowhim review``): a worklist of specimens, each specimen's
gates on its events, gate adjustment with re-gating on the server, sign-out and the audit trail.

:mod:`cytowhim.review.model` gates and counts (no web framework); :mod:`cytowhim.review.server`
is the Flask application. Flask is imported only when the server is built.
"""
