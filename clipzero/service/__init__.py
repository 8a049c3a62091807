"""The clipzero service: a Gradio web demo and a JSON HTTP API on one port, with the model loaded once.

Needs the ``web`` extra (``pip install 'clipzero[web]'``: gradio, fastapi, uvicorn).
"""

from .core import Service, ServiceSettings
from .server import create_app, serve

__all__ = ["Service", "ServiceSettings", "create_app", "serve"]
