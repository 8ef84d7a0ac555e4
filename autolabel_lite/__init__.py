"""autolabel_lite: label text datasets with language models, with confidence you can trust."""

from .agent import LabelingAgent
from .config import TaskConfig, load_config
from .errors import AutolabelError, ConfigError, DataError, ProviderError
from .result import LabelingResult

__all__ = [
    "AutolabelError",
    "ConfigError",
    "DataError",
    "LabelingAgent",
    "LabelingResult",
    "ProviderError",
    "TaskConfig",
    "load_config",
]
__version__ = "0.1.0"
