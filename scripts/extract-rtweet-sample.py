#!/usr/bin/env python3
"""Extracts the tweets that Debian's r-cran-rtweet package ships as test
fixtures (MIT licence) into samples/tweets.jsonl, in the document format of
docs/formats.md §2.1. Run once; the output is committed.

    apt-get download r-cran-rtweet && dpkg-deb -x r-cran-rtweet_*.deb /tmp/rt
    python3 scripts/extract-rtweet-sample.py /tmp/rt/usr/share/doc/r-cran-rtweet/tests/fixtures > samples/tweets.jsonl
"""
import glob
import gzip
import json
import sys
from datetime import datetime, timezone

root = sys.argv[1]
seen = {}


def walk(o):
    if isinstance(o, dict):
        if ("id_str" in o and ("full_text" in o or "text" in o) and "created_at" in o
                and isinstance(o.get("user"), dict)):
            text = o.get("full_text") or o.get("text")
            if o["id_str"] not in seen and text:
                seen[o["id_str"]] = o
        for v in o.values():
            if isinstance(v, str) and v[:1] in "{[":
                try:
                    walk(json.loads(v))
                except ValueError:
                    pass
            else:
                walk(v)
    elif isinstance(o, list):
        for v in o:
            walk(v)


for f in sorted(glob.glob(root + "/*")):
    raw = open(f, "rb").read()
    if f.endswith(".gz"):
        raw = gzip.decompress(raw)
    try:
        walk(json.loads(raw))
    except ValueError:
        pass

for id_str, o in sorted(seen.items(), key=lambda kv: kv[1]["created_at"]):
    created = datetime.strptime(o["created_at"], "%a %b %d %H:%M:%S %z %Y").astimezone(timezone.utc)
    user = o["user"]["screen_name"]
    doc = {
        "id": "tw:" + id_str,
        "source": "twitter",
        "type": "retweet" if "retweeted_status" in o else ("reply" if o.get("in_reply_to_status_id_str") else "post"),
        "lang": o.get("lang"),
        "author": "@" + user,
        "text": o.get("full_text") or o.get("text"),
        "url": f"https://twitter.com/{user}/status/{id_str}",
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    print(json.dumps(doc, ensure_ascii=False))
