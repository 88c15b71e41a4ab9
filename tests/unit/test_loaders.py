"""The papers' dataset loaders on tiny files written in each published format, and malformed ones.

Each fixture copies the published layout: file names, separators, headers,
JSON fields and value formats (see the module docstrings of
rec_lib.data.loaders.*). Numbers are checked by hand.
"""

from __future__ import annotations

import gzip
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rec_lib import data
from rec_lib.data import DatasetFormatError, DatasetNotFoundError
from rec_lib.data.errors import ChecksumError
from rec_lib.data.loaders import PAPER_DATASETS, adressa_periods, loader_options
from rec_lib.data.loaders.base import postprocess

NO_FILTER = dict(implicit_threshold=None, user_core=None, item_core=None, min_user=None)


def write(folder: Path, name: str, text: str | bytes, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding=encoding)
    return path


def raw(data_tmp: Path, name: str) -> Path:
    return data_tmp / "raw" / name


def json_lines(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# ------------------------------------------------------------------------ registry
def test_every_paper_dataset_is_registered_with_source_and_files():
    names = {s.name for s in data.list_datasets()}
    assert set(PAPER_DATASETS) <= names
    for name in PAPER_DATASETS:
        spec = data.get_spec(name)
        assert spec.url.startswith("http") and spec.files and spec.how_to_get
        assert spec.description and spec.paper
        for digest in list(spec.sha256.values()) + list(spec.md5.values()):
            assert all(c in "0123456789abcdef" for c in digest)
        assert all(len(v) == 64 for v in spec.sha256.values()) and all(len(v) == 32 for v in spec.md5.values())


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_missing_dataset_names_file_folder_and_source(data_tmp, name):
    spec = data.get_spec(name)
    with pytest.raises(DatasetNotFoundError) as err:
        data.load(name)
    msg = str(err.value)
    assert spec.files[0][0] in msg and str(data_tmp / "raw" / spec.folder) in msg
    assert "where to get it" in msg


def test_unknown_or_bad_options_fail_before_reading(data_tmp):
    write(raw(data_tmp, "ml-1m"), "ratings.dat", "1::1::5::978300760\n")
    with pytest.raises(TypeError, match=r"unknown option\(s\) usercore.*user_core=None"):
        data.load("ml-1m", usercore=5)
    with pytest.raises(ValueError, match="user_core must be an integer >= 1"):
        data.load("ml-1m", user_core=0)
    with pytest.raises(ValueError, match="bad_lines must be one of"):
        data.load("ml-1m", bad_lines="ignore")
    assert not (data_tmp / "cache").exists()


def test_loader_options_lists_defaults():
    opts = loader_options("amazon-book")
    assert opts["implicit_threshold"] == 3.5 and opts["user_core"] == 20 and opts["item_core"] == 20
    assert loader_options("adressa")["min_active_time"] == 1
    assert loader_options("goodreads")["is_read"] is True


# ---------------------------------------------------------------------- MovieLens
ML1M_RATINGS = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n2::3408::4::978300275\n"
ML1M_MOVIES = "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation|Children's|Musical\n3408::Erin Brockovich (2000)::Drama\n"


def test_ml1m_dat_files_with_titles(data_tmp):
    folder = raw(data_tmp, "ml-1m")
    write(folder, "ratings.dat", ML1M_RATINGS)
    write(folder, "movies.dat", ML1M_MOVIES, "latin-1")
    d = data.load("ml-1m")
    assert (len(d), d.n_users, d.n_items) == (4, 2, 3)
    first = d.df.iloc[0]  # 978298413: user 2 rated 1193 with 4
    assert d.user_ids[int(first["user"])] == 2 and d.item_ids[int(first["item"])] == 1193 and first["rating"] == 4
    assert d.item_titles([int(first["item"])]) == ["One Flew Over the Cuckoo's Nest"]
    assert d.item_meta.set_index("raw_item").loc[661, "year"] == 1996


def test_ml1m_from_the_published_zip_and_checksums(data_tmp, monkeypatch):
    folder = raw(data_tmp, "ml-1m")
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "ml-1m.zip", "w") as zf:
        zf.writestr("ml-1m/ratings.dat", ML1M_RATINGS)
        zf.writestr("ml-1m/movies.dat", ML1M_MOVIES.encode("latin-1"))
    d = data.load("ml-1m", verify=False)
    assert len(d) == 4 and d.item_meta is not None
    with pytest.raises(ChecksumError, match="sha256") as err:  # our toy zip is not GroupLens's: checked by default
        data.load("ml-1m")
    assert "ml-1m.zip" in str(err.value) and "fetch it again" in str(err.value)
    assert not (data_tmp / "cache" / "checksums.json").exists()  # a mismatch is never remembered


def test_ml1m_malformed_line_names_archive_member_and_line(data_tmp):
    folder = raw(data_tmp, "ml-1m")
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "ml-1m.zip", "w") as zf:
        zf.writestr("ml-1m/ratings.dat", ML1M_RATINGS + "3::12::x::978300760\n")
    with pytest.raises(DatasetFormatError, match=r"ml-1m.zip:ml-1m/ratings.dat, line 5: column 'rating' holds 'x'"):
        data.load("ml-1m", verify=False)  # a toy zip: its sha256 is not GroupLens's
    write(folder, "ratings.dat", "1::2::3::4\n1:2::3::4::5\n")
    with pytest.raises(DatasetFormatError, match="ratings.dat, line 2"):
        data.load("ml-1m")


def test_ml10m_extracted_folder(data_tmp):
    folder = raw(data_tmp, "ml-10m")
    write(folder, "ml-10M100K/ratings.dat", "1::122::5::838985046\n1::185::4.5::838983525\n")
    write(folder, "ml-10M100K/movies.dat", "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n")
    d = data.load("ml-10m")
    assert sorted(d.ratings.tolist()) == [4.5, 5.0] and sorted(d.item_titles([0, 1])) == ["Boomerang", "Net, The"]


def test_ml25m_csv_with_header_and_quoted_titles(data_tmp):
    folder = raw(data_tmp, "ml-25m")
    write(folder, "ratings.csv", "userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306,3.5,1147868817\n2,296,4.0,1147868828\n")
    write(folder, "movies.csv", 'movieId,title,genres\n296,Pulp Fiction (1994),Comedy|Crime|Drama|Thriller\n306,"Three Colors: Red (Trois couleurs: Rouge) (1994)",Drama\n')
    d = data.load("ml-25m", chunksize=2)
    assert (len(d), d.n_users, d.n_items) == (3, 2, 2)
    assert set(d.item_titles([0, 1])) == {"Pulp Fiction", "Three Colors: Red (Trois couleurs: Rouge)"}
    implicit = data.load("ml-25m", implicit_threshold=0)  # 2TS: every rating is an interaction
    assert implicit.ratings.tolist() == [1.0, 1.0, 1.0]
    write(folder, "ratings.csv", "userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306\n")
    with pytest.raises(DatasetFormatError, match="ratings.csv, line 3: too few fields"):
        data.load("ml-25m")


# ------------------------------------------------------------------------- Netflix
NETFLIX_1 = "1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n2:\n2059652,4,2005-09-05\n1488844,4,2005-05-13\n"


def netflix_files(folder: Path, first: str = NETFLIX_1) -> None:
    write(folder, "combined_data_1.txt", first)
    write(folder, "combined_data_2.txt", "3:\n822109,1,2004-01-01\n")
    write(folder, "combined_data_3.txt", "4:\n2059652,2,2003-12-31\n")
    write(folder, "combined_data_4.txt", "5:\n1488844,5,2005-12-31\n")
    write(folder, "movie_titles.csv", "1,2003,Dinosaur Planet\n2,2004,Isle of Man TT 2004 Review\n3,1997,Character\n4,NULL,Paula Abdul's Get Up & Dance\n5,2004,The Rise and Fall, of ECW\n", "latin-1")


def test_netflix_blocks_titles_and_min_user(data_tmp):
    folder = raw(data_tmp, "netflix")
    netflix_files(folder)
    d = data.load("netflix", min_user=None, chunksize=2)  # chunks cut the movie blocks
    assert (len(d), d.n_users, d.n_items) == (7, 3, 5)
    pairs = {(int(d.user_ids[u]), int(d.item_ids[i]), float(r)) for u, i, r in zip(d.users, d.items, d.ratings)}
    assert (2059652, 2, 4.0) in pairs and (1488844, 1, 3.0) in pairs and (1488844, 5, 5.0) in pairs
    assert d.timestamps[0] == 1072828800  # 2003-12-31 00:00 UTC
    meta = d.item_meta.set_index("raw_item")
    assert meta.loc[5, "title"] == "The Rise and Fall, of ECW" and np.isnan(meta.loc[4, "year"])
    d3 = data.load("netflix", min_user=3)  # DiPS drops users with < 20 ratings; here < 3
    assert set(d3.user_ids.tolist()) == {1488844}


def test_netflix_malformed_and_orphan_lines(data_tmp):
    folder = raw(data_tmp, "netflix")
    netflix_files(folder, NETFLIX_1 + "822109,7,2005-01-01\n")
    with pytest.raises(DatasetFormatError, match="combined_data_1.txt, line 7: '822109,7,2005-01-01'"):
        data.load("netflix")
    netflix_files(folder, "1488844,3,2005-09-06\n")
    with pytest.raises(DatasetFormatError, match="line 1: a rating line before the first 'MovieID:'"):
        data.load("netflix")


# -------------------------------------------------------------------------- Amazon
def amazon_2014(n_users: int = 3) -> str:
    rows = [f"A{u}USER,00000000{i},{(u + i) % 5 + 1}.0,{1000000000 + 86400 * (u * 3 + i)}" for u in range(n_users)
            for i in range(3)]
    return "\n".join(rows) + "\n"


def test_amazon_2014_csv_with_dips_preprocessing(data_tmp):
    write(raw(data_tmp, "amazon-book"), "ratings_Books.csv", amazon_2014())
    d = data.load("amazon-book", **NO_FILTER)
    assert (len(d), d.n_users, d.n_items) == (9, 3, 3)
    # ratings (u + i) % 5 + 1: user 0 -> 1,2,3; user 1 -> 2,3,4; user 2 -> 3,4,5; > 3.5 keeps 3 of 9
    implicit = data.load("amazon-book", user_core=None, item_core=None)
    assert len(implicit) == 3 and set(implicit.ratings) == {1.0}
    cored = data.load("amazon-book", user_core=2, item_core=1)  # only user 2 has 2 positives
    assert set(cored.user_ids) == {"A2USER"} and len(cored) == 2


def test_amazon_2018_column_order_and_json(data_tmp):
    folder = raw(data_tmp, "amazon-book")
    write(folder, "Books.csv", "0001713353,A1C6M8LCIX4M6M,5.0,1123804800\n0001713353,A1REUF3A1YCPHM,5.0,1112140800\n")
    d = data.load("amazon-book", **NO_FILTER)
    assert set(d.user_ids) == {"A1C6M8LCIX4M6M", "A1REUF3A1YCPHM"} and set(d.item_ids) == {"0001713353"}
    os.remove(folder / "Books.csv")
    rows = [{"overall": 4.0, "verified": True, "reviewTime": "03 30, 2005", "reviewerID": "A1REUF3A1YCPHM",
             "asin": "0001713353", "style": {"Format:": " Hardcover"}, "reviewerName": "x",
             "reviewText": "good", "summary": "s", "unixReviewTime": 1112140800},
            {"overall": 2, "reviewerID": "A2", "asin": "0002", "unixReviewTime": 1112140900}]
    write(folder, "Books_5.json.gz", gzip.compress(json_lines(rows).encode()))
    d = data.load("amazon-book", **NO_FILTER)
    assert sorted(d.ratings.tolist()) == [2.0, 4.0] and d.timestamps.tolist() == [1112140800, 1112140900]


def test_amazon_malformed(data_tmp):
    folder = raw(data_tmp, "amazon-book")
    write(folder, "ratings_Books.csv", amazon_2014() + "AX,0001,5.0,notatime\n")
    with pytest.raises(DatasetFormatError, match="line 10: column 'timestamp' holds 'notatime'"):
        data.load("amazon-book")
    with pytest.warns(UserWarning, match="skipped 1 malformed lines"):
        assert len(data.load("amazon-book", bad_lines="skip", **NO_FILTER)) == 9


# ---------------------------------------------------------------------- Foursquare
def test_foursquare_www2019_folder_and_times(data_tmp):
    folder = raw(data_tmp, "foursquare")
    lines = ["822121\t4b4b87b5f964a5204a9f26e3\tTue Apr 03 18:00:07 +0000 2012\t-420",
             "208842\t4b4606f2f964a520751426e3\tWed Apr 04 11:32:47 +0000 2012\t120",
             "822121\t4b4606f2f964a520751426e3\tFri Apr 06 21:30:23 +0000 2012\t-300",
             "822121\t4b4b87b5f964a5204a9f26e3\tSat Apr 07 08:00:00 +0000 2012\t-420"]
    write(folder, "dataset_WWW2019/dataset_WWW_Checkins_anonymized.txt", "\n".join(lines) + "\n")
    d = data.load("foursquare", **NO_FILTER)
    assert (len(d), d.n_users, d.n_items) == (4, 2, 2)
    assert d.timestamps[0] == 1333476007  # 2012-04-03 18:00:07 UTC
    # 2-core: user 208842 (one check-in) goes, then venue ...4426e3 (one left), leaving 822121's two at ...a9f26e3
    assert len(data.load("foursquare", user_core=2, item_core=2)) == 2
    cored = data.load("foursquare", user_core=2, item_core=1)
    assert set(cored.user_ids.tolist()) == {"822121"} and len(cored) == 3


def test_foursquare_bad_time(data_tmp):
    folder = raw(data_tmp, "foursquare")
    write(folder, "dataset_TIST2015_Checkins.txt", "1\tv1\tTue Apr 03 18:00:07 +0000 2012\t0\n2\tv1\t2012-04-03\t0\n")
    with pytest.raises(DatasetFormatError, match="line 2: the check-in time '2012-04-03'"):
        data.load("foursquare")


# ------------------------------------------------------------------------- Adressa
def adressa_day(day: int, events: list[tuple]) -> str:
    rows = []
    for user, article, minute, active in events:
        row = {"eventId": 906331936 + minute, "city": "trondheim", "userId": user,
               "time": 1483225200 + (day - 1) * 86400 + 60 * minute, "sessionStart": True,
               "url": "http://adressa.no/nyheter/x.ece", "country": "no", "deviceType": "Mobile",
               "profile": [{"item": "0", "groups": [{"count": 1, "group": "adressa-importance", "weight": 1.0}]}]}
        if article:
            row.update(id=article, title=f"title {article}", category1="nyheter|trondheim")
        if active is not None:
            row["activeTime"] = active
        rows.append(row)
    return json_lines(rows)


def adressa_week(folder: Path, days: int = 7) -> None:
    for day in range(1, days + 1):
        events = [("cx:u1", "a1", 30, 12), ("cx:u2", "a1", 700, 0), ("cx:u2", None, 710, 5), ("cx:u3", "a2", 900, None),
                  ("cx:u1", "a2", 1200, 40)]
        write(folder, f"one_week/2017010{day}", adressa_day(day, events))


def test_adressa_one_week_active_time_and_periods(data_tmp):
    folder = raw(data_tmp, "adressa")
    adressa_week(folder)
    d = data.load("adressa")  # SML: zero (and absent) reading time removed, non-articles dropped
    assert len(d) == 14 and set(d.user_ids) == {"cx:u1"} and set(d.item_ids) == {"a1", "a2"}
    assert d.item_titles([0]) == ["title a1"]
    assert len(data.load("adressa", min_active_time=None)) == 28  # the page view without an article never counts
    two = data.load("adressa", days=2)
    periods = adressa_periods(two)  # Oslo time: 00:30 morning, 20:00 evening -> 2 periods a day
    assert len(two) == 4 and periods.tolist() == [0, 1, 2, 3]


def test_adressa_missing_day_and_bad_json(data_tmp):
    folder = raw(data_tmp, "adressa")
    adressa_week(folder, days=3)
    with pytest.raises(DatasetNotFoundError, match="20170104"):
        data.load("adressa")
    assert len(data.load("adressa", days=3)) == 6
    with pytest.raises(ValueError, match="days must be an integer in"):
        data.load("adressa", days=8)
    text = adressa_day(1, [("cx:u1", "a1", 30, 12)]) + '{"userId": "cx:u9", "time": "yesterday", "id": "a1"}\n'
    write(folder, "one_week/20170101", text)
    with pytest.raises(DatasetFormatError, match=r"20170101, line 2: field 'time' holds 'yesterday'"):
        data.load("adressa", days=1)
    write(folder, "one_week/20170101", text.replace('{"userId": "cx:u9"', '{"userId" "cx:u9"'))
    with pytest.raises(DatasetFormatError, match="line 2: not a JSON object"):
        data.load("adressa", days=1)


# ---------------------------------------------------------------------------- Yelp
def yelp_reviews(n_users: int, n_items: int) -> list[dict]:
    rows = []
    for u in range(n_users):
        for i in range(n_items):
            rows.append({"review_id": f"r{u}-{i}", "user_id": f"u{u}", "business_id": f"b{i}", "stars": (u + i) % 5 + 1,
                         "useful": 0, "funny": 0, "cool": 0, "text": "Great \"tacos\"\nand more",
                         "date": f"2018-0{1 + i % 9}-1{u % 10} 12:00:00" if u % 2 else f"2018-0{1 + i % 9}-1{u % 10}"})
    return rows


def test_yelp_reviews_and_sml_filter(data_tmp):
    folder = raw(data_tmp, "yelp")
    rows = yelp_reviews(3, 4) + [{"review_id": "x", "user_id": "lonely", "business_id": "b0", "stars": 5.0,
                                  "date": "2019-01-01 00:00:00"}]
    write(folder, "yelp_academic_dataset_review.json", json_lines(rows))
    d = data.load("yelp", **NO_FILTER)
    assert (len(d), d.n_users, d.n_items) == (13, 4, 4) and d.ratings.max() == 5.0
    assert d.timestamps.min() == 1515542400  # u0's "2018-01-10" (date only) is midnight UTC
    assert 1515672000 in d.timestamps  # u1's "2018-01-11 12:00:00"
    cored = data.load("yelp", user_core=4, item_core=3)  # SML uses 10 / 20
    assert set(cored.user_ids) == {"u0", "u1", "u2"} and len(cored) == 12


def test_yelp_missing_field_and_bad_date(data_tmp):
    folder = raw(data_tmp, "yelp")
    write(folder, "review.json", json_lines([{"user_id": "u", "business_id": "b", "stars": 4, "date": "2018-01-01"},
                                             {"user_id": "u", "stars": 4, "date": "2018-01-02"}]))
    with pytest.raises(DatasetFormatError, match="review.json, line 2: the field 'business_id' is missing"):
        data.load("yelp")
    write(folder, "review.json", json_lines([{"user_id": "u", "business_id": "b", "stars": 4, "date": "01/02/2018"}]))
    with pytest.raises(DatasetFormatError, match="line 1: the date '01/02/2018'"):
        data.load("yelp")


# -------------------------------------------------------------------------- Twitch
def test_twitch_user_streamer_pairs(data_tmp):
    folder = raw(data_tmp, "twitch")
    write(folder, "100k_a.csv", "1,33842865744,mithrain,154,156\n1,33846768288,alptv,166,169\n2,33886469056,mithrain,587,588\n")
    d = data.load("twitch")
    assert set(d.item_ids) == {"mithrain", "alptv"} and d.timestamps.tolist() == [154 * 600, 166 * 600, 587 * 600]
    write(folder, "full_a.csv.gz", gzip.compress(b"7,1,x,10,9\n"))  # the full file wins when present
    with pytest.raises(DatasetFormatError, match=r"full_a.csv.gz, line 1: time_stop is before time_start"):
        data.load("twitch")


# ----------------------------------------------------------------------- GoodReads
def test_goodreads_csv_is_read(data_tmp):
    folder = raw(data_tmp, "goodreads")
    write(folder, "goodreads_interactions.csv",
          "user_id,book_id,is_read,rating,is_reviewed\n0,948,1,5,0\n0,947,1,5,1\n0,946,0,0,0\n1,948,1,3,0\n")
    d = data.load("goodreads")
    assert len(d) == 3 and d.timestamps.tolist() == [0, 1, 2]  # no dates: file order
    assert len(data.load("goodreads", is_read=False)) == 4
    assert len(data.load("goodreads", min_rating=4)) == 2
    write(folder, "goodreads_interactions.csv", "user_id,book_id,is_read,rating,is_reviewed\n0,948,2,5,0\n")
    with pytest.raises(DatasetFormatError, match="line 2: is_read must be 0 or 1"):
        data.load("goodreads")


def test_goodreads_json_dates(data_tmp):
    folder = raw(data_tmp, "goodreads")
    rows = [{"user_id": "8842281e1d1347389f2ab93d60773d4d", "book_id": "24375664", "review_id": "5cd4",
             "is_read": True, "rating": 5, "review_text_incomplete": "", "date_added": "Mon Aug 01 13:41:57 -0700 2016",
             "date_updated": "Mon Aug 01 13:42:41 -0700 2016", "read_at": "Sat Jul 30 00:00:00 -0700 2016",
             "started_at": ""},
            {"user_id": "8842281e1d1347389f2ab93d60773d4d", "book_id": "18245960", "review_id": "dfdb",
             "is_read": False, "rating": 0, "date_added": "Sun Jul 30 07:44:10 -0700 2017"}]
    write(folder, "goodreads_interactions_dedup.json.gz", gzip.compress(json_lines(rows).encode()))
    d = data.load("goodreads")
    assert len(d) == 1 and d.timestamps.tolist() == [1470084117]  # 2016-08-01 20:41:57 UTC
    rows[1]["is_read"] = "no"
    write(folder, "goodreads_interactions_dedup.json.gz", gzip.compress(json_lines(rows).encode()))
    with pytest.raises(DatasetFormatError, match="line 2: field 'is_read' holds 'no'"):
        data.load("goodreads")


# -------------------------------------------------------------------------- Last.fm
LASTFM = ("user_000001\t2009-05-04T23:08:57Z\tf1b1cf71-bd35-4e99-8624-24a6e15f133a\tDeep Dish\t\tFuck Me Im Famous (Pacha Ibiza)-09-28-2007\n"
          "user_000001\t2009-05-04T13:54:10Z\ta7f7df4a-77d8-4f12-8acd-5c60c93f4de8\t坂本龍一\t\tComposition 0919 (Live_2009_4_15)\n"
          "user_000002\t2009-05-04T13:52:04Z\ta7f7df4a-77d8-4f12-8acd-5c60c93f4de8\t坂本龍一\tf7c1f8f8-b935-45ed-8fc8-7def69d92a10\tMc2 (Live_2009_4_15)\n"
          "user_000002\t2009-05-05T13:52:04Z\ta7f7df4a-77d8-4f12-8acd-5c60c93f4de8\t坂本龍一\tf7c1f8f8-b935-45ed-8fc8-7def69d92a10\tMc2 (Live_2009_4_15)\n")


def test_lastfm_celma_tsv_tracks_artists_and_top_n(data_tmp):
    folder = raw(data_tmp, "lastfm-1k")
    write(folder, "lastfm-dataset-1K/userid-timestamp-artid-artname-traid-traname.tsv", LASTFM)
    d = data.load("lastfm-1k", verify=False)  # a toy file: its md5 is not the published one
    assert (len(d), d.n_users, d.n_items) == (4, 2, 3)
    assert "Deep Dish\x1fFuck Me Im Famous (Pacha Ibiza)-09-28-2007" in set(d.item_ids)
    assert data.load("lastfm-1k", item="artist", verify=False).n_items == 2
    top = data.load("lastfm-1k", top_items=1, verify=False)
    assert len(top) == 2 and set(top.item_ids) == {"f7c1f8f8-b935-45ed-8fc8-7def69d92a10"}
    with pytest.raises(ValueError, match="item must be one of"):
        data.load("lastfm-1k", item="album", verify=False)
    with pytest.raises(ChecksumError, match="md5"):  # not the published file: checked by default
        data.load("lastfm-1k")
    write(folder, "lastfm-dataset-1K/userid-timestamp-artid-artname-traid-traname.tsv", LASTFM + "user_000003\t2009-05-04\t\tA\t\tB\n")
    with pytest.raises(DatasetFormatError, match="line 5: the timestamp '2009-05-04'"):
        data.load("lastfm-1k", verify=False)


def test_lastfm_jodie_csv(data_tmp):
    folder = raw(data_tmp, "lastfm-1k")
    write(folder, "lastfm.csv", "user_id,item_id,timestamp,state_label,comma_separated_list_of_features\n"
                                "0,0,0.0,0,0.0\n1,1,6.0,0,0.0\n0,1,41.0,0,0.0,0.3\n")
    d = data.load("lastfm-1k")
    assert d.timestamps.tolist() == [0, 6, 41] and d.n_users == 2
    write(folder, "lastfm.csv", "user_id,item_id,timestamp,state_label,comma_separated_list_of_features\n0,a,0.0,0,0\n")
    with pytest.raises(DatasetFormatError, match="lastfm.csv, line 2: expected numbers"):
        data.load("lastfm-1k")


# --------------------------------------------------------------------------- Taobao
TAOBAO = ("1,2268318,2520377,pv,1511544070\n1,2333346,2520771,pv,1511561733\n1,2576651,149192,buy,1511572885\n"
          "2,2268318,2520377,cart,1511583000\n3,3830808,4181361,fav,1511600000\n3,3830808,4181361,pv,1212341234\n")


def test_taobao_behaviours_period_and_categories(data_tmp):
    folder = raw(data_tmp, "taobao")
    write(folder, "UserBehavior.csv", TAOBAO)
    d = data.load("taobao")
    assert len(d) == 5  # 1212341234 (2008) lies outside the nine days
    assert d.item_meta.set_index("raw_item").loc[2576651, "category"] == 149192
    assert len(data.load("taobao", clip_dates=False)) == 6
    assert len(data.load("taobao", behaviours=("pv",))) == 2
    with pytest.raises(ValueError, match="behaviours must be a non-empty subset"):
        data.load("taobao", behaviours=("click",))
    write(folder, "UserBehavior.csv", TAOBAO + "4,1,1,like,1511600000\n")
    with pytest.raises(DatasetFormatError, match="line 7: behavior_type 'like'"):
        data.load("taobao")


# ---------------------------------------------------------------------------- cache
def test_parse_is_cached_and_invalidated_by_file_changes(data_tmp, monkeypatch):
    from rec_lib.data.loaders import movielens

    folder = raw(data_tmp, "ml-1m")
    path = write(folder, "ratings.dat", ML1M_RATINGS)
    first = data.load("ml-1m")
    entries = sorted((data_tmp / "cache" / "datasets" / "ml-1m").iterdir())
    assert [e.name.split("-")[0] for e in entries] == ["parsed"] and (entries[0] / "meta.json").exists()
    calls = []
    real = movielens.parse_movielens
    monkeypatch.setattr(movielens, "parse_movielens", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = data.load("ml-1m")
    assert calls == [] and again.df.equals(first.df) and (again.user_ids == first.user_ids).all()
    data.load("ml-1m", implicit_threshold=4)  # a new option set: a "final" entry beside the parse
    assert calls == [] and len(list((data_tmp / "cache" / "datasets" / "ml-1m").glob("final-*"))) == 1
    path.write_text(ML1M_RATINGS + "3::1::2::978300999\n")
    os.utime(path, ns=(1, 1))
    assert len(data.load("ml-1m")) == 5 and calls == [1]
    assert len(list((data_tmp / "cache" / "datasets" / "ml-1m").glob("parsed-*"))) == 1  # the stale one pruned
    assert len(data.load("ml-1m", cache=False)) == 5 and calls == [1, 1]
    from rec_lib.data.loaders import base

    monkeypatch.setattr(base, "_code_version", lambda parse: "edited")  # a change to the parsing code
    assert len(data.load("ml-1m")) == 5 and calls == [1, 1, 1]


def test_cache_roundtrip_keeps_meta_and_string_ids(data_tmp):
    folder = raw(data_tmp, "adressa")
    adressa_week(folder, days=1)
    a = data.load("adressa", days=1)
    b = data.load("adressa", days=1)
    assert b.item_meta.equals(a.item_meta) and list(b.user_ids) == list(a.user_ids) and b.name == a.name


def test_postprocess_order_threshold_then_core(tiny):
    out = postprocess(tiny, implicit_threshold=4, user_core=2, item_core=1)
    # ratings >= 4: a-x, b-x, d-w, b-y(5), b-z, d-x, c-x -> users with >= 2: b (3), d (2)
    assert len(out) == 5 and out.n_users == 2 and set(out.ratings) == {1.0}


def test_every_spec_says_where_its_checksums_come_from():
    for name in PAPER_DATASETS:
        assert "Checksums: " in data.get_spec(name).description
    from rec_lib.data.loaders.base import register_loader

    with pytest.raises(ValueError, match="say where the checksums come from"):
        register_loader(lambda folder, layout: None, name="x", folder="x", files=(("a",),), url="u")
