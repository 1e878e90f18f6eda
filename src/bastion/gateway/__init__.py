"""The serving gateway (Watch pillar): an Open Inference Protocol v2 server over model adapters.

fastapi and uvicorn load only when an app is created (``pip install 'bastion[gateway]'``).
"""

from bastion.gateway.oip import create_oip_app, run_in_thread

__all__ = ["create_oip_app", "run_in_thread"]
