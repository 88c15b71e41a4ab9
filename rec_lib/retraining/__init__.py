"""Periodic retraining: SML (Zhang et al. 2020) beside the strategies it is compared with."""

from rec_lib.retraining.protocol import *  # noqa: F401,F403
from rec_lib.retraining.strategies import *  # noqa: F401,F403
from rec_lib.retraining.transfer import *  # noqa: F401,F403
from rec_lib.retraining.chapter import CHAPTER, SMLSettings  # noqa: F401,E402  (python -m rec_lib run sml)
