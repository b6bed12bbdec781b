"""cart-pipeline"""

from cart_pipeline.core import compat as _compat

__version__ = "0.1"

_compat.install()  # before anything imports torchvision (see core/compat.py)
