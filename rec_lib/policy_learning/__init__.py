"""Fast offline policy learning over large catalogues (Sakhi, Rohde and Gilotte).
"""
from rec_lib.policy_learning.policy import SoftmaxPolicy, exact_topk
from rec_lib.policy_learning.index import ExactIndex, HNSWIndex, topk_recall
from rec_lib.policy_learning.estimators import *  # noqa
from rec_lib.policy_learning.rewards import *  # noqa
