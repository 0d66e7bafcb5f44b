"""enastool: efficient neural architecture search with typed architecture encodings.

Importing this package (and ``enastool.encoding``) does not import torch.
"""

__version__ = "0.1.0"
