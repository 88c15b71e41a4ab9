"""Loaders of the papers' datasets in their published formats (importing this registers them all).

=============  =====================  ===============================================
name           module                 paper's preprocessing (the defaults)
=============  =====================  ===============================================
ml-1m          :mod:`.movielens`      none (DiPS, explicit ratings)
ml-10m         :mod:`.movielens`      none (DiPS)
ml-25m         :mod:`.movielens`      none (2TS ignores ratings: ``implicit_threshold=0``)
netflix        :mod:`.netflix`        ``min_user=20`` (DiPS)
amazon-book    :mod:`.amazon`         ``implicit_threshold=3.5, user_core=20, item_core=20`` (DiPS)
foursquare     :mod:`.foursquare`     ``user_core=20, item_core=20`` (DiPS)
adressa        :mod:`.adressa`        ``min_active_time=1`` (SML); periods: :func:`.adressa.adressa_periods`
yelp           :mod:`.yelp`           ``user_core=10, item_core=20`` (SML)
twitch         :mod:`.twitch`         none (Sakhi et al.)
goodreads      :mod:`.goodreads`      ``is_read=True`` (Sakhi et al.)
lastfm-1k      :mod:`.lastfm`         none (2TS; JODIE's ``lastfm.csv`` accepted)
taobao         :mod:`.taobao`         all behaviours, the documented nine days (2TS)
=============  =====================  ===============================================

``rec_lib.data.load(name, **options)`` takes each loader's own options plus
the common ones of :mod:`.base` (``implicit_threshold``, ``drop_repeats``,
``min_user``, ``user_core``, ``item_core``, ``cache``, ``chunksize``,
``bad_lines``); :func:`loader_options` lists them with their defaults.
"""

from rec_lib.data.loaders import (adressa, amazon, foursquare, goodreads, lastfm, movielens, netflix, taobao,  # noqa: F401
                                  twitch, yelp)
from rec_lib.data.loaders.adressa import adressa_periods
from rec_lib.data.loaders.base import loader_options

__all__ = ["adressa_periods", "loader_options", "PAPER_DATASETS"]

PAPER_DATASETS = ("ml-1m", "ml-10m", "ml-25m", "netflix", "amazon-book", "foursquare", "adressa", "yelp", "twitch",
                  "goodreads", "lastfm-1k", "taobao")
