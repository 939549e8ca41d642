"""Okapi BM25 over short Russian (and some English) texts, with Snowball stemming.

Small on purpose: the knowledge base and the prompt's scripts are tens of documents, so an in-memory
index rebuilt on change is faster and simpler than any external search engine.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import snowballstemmer

_WORD = re.compile(r"[0-9a-zа-яё]+", re.IGNORECASE)
_CYRILLIC = re.compile(r"[а-яё]")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words too common to say anything about a question (after lowercasing, before stemming).
STOPWORDS = _words(
    """
    а без более бы был была были было быть в вам вас весь во вот все всё всего всех вы где да даже для до его
    ее её если есть еще ещё же за и из или им их к как ко когда кто ли либо мне может мы на надо наш не него
    нее неё нет ни них но ну о об однако он она они оно от очень по под при с со так также такой там те тем
    то того тоже той только том ты у уже хотя чего чей чем что чтобы чье чья эта эти это я мой моя мои
    меня мы нам нас ваш ваша ваши свой свои можно нужно какой какая какие каких сколько подскажите
    пожалуйста скажите расскажите
    the a an and or of to in on for is are be how what
    """
)


class Tokenizer:
    """Lowercase words, stop words dropped, stemmed with the Russian or English Snowball stemmer."""

    def __init__(self) -> None:
        self._ru = snowballstemmer.stemmer("russian")
        self._en = snowballstemmer.stemmer("english")

    def __call__(self, text: str) -> list[str]:
        """The terms of `text`."""
        words = [w for w in _WORD.findall(text.lower().replace("ё", "е")) if w not in STOPWORDS]
        return [self._stem(w) for w in words]

    def _stem(self, word: str) -> str:
        if word.isdigit():
            return word
        stemmer = self._ru if _CYRILLIC.search(word) else self._en
        return str(stemmer.stemWord(word))


class BM25Index:
    """Ranks documents (lists of terms) against a query with Okapi BM25."""

    def __init__(self, documents: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75) -> None:
        self._docs = [Counter(d) for d in documents]
        self._lengths = [len(d) for d in documents]
        self._avg = (sum(self._lengths) / len(self._lengths)) if self._lengths else 0.0
        self._k1 = k1
        self._b = b
        df: Counter[str] = Counter()
        for doc in self._docs:
            df.update(doc.keys())
        n = len(self._docs)
        # The "plus one" IDF variant: never negative, so a term in most documents still counts a little.
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def __len__(self) -> int:
        return len(self._docs)

    def scores(self, query: Sequence[str]) -> list[float]:
        """The score of every document, in document order."""
        terms = Counter(query)
        out = []
        for doc, length in zip(self._docs, self._lengths, strict=True):
            score = 0.0
            norm = self._k1 * (1 - self._b + self._b * length / self._avg) if self._avg else self._k1
            for term, qf in terms.items():
                tf = doc.get(term, 0)
                if tf:
                    score += qf * self._idf[term] * tf * (self._k1 + 1) / (tf + norm)
            out.append(score)
        return out

    def top(self, query: Sequence[str], k: int, min_score: float = 0.0) -> list[tuple[int, float]]:
        """(document index, score) of the best `k` documents scoring above `min_score`, best first."""
        ranked = sorted(enumerate(self.scores(query)), key=lambda p: (-p[1], p[0]))
        return [(i, s) for i, s in ranked[:k] if s > min_score]


class FieldedBM25:
    """BM25 per field summed with weights (a simple BM25F): a match in a question outweighs one in an answer."""

    def __init__(self, fields: Sequence[Sequence[Sequence[str]]], weights: Sequence[float]) -> None:
        if len(fields) != len(weights):
            raise ValueError("one weight per field")
        self._indexes = [BM25Index(docs) for docs in fields]
        self._weights = list(weights)
        self._size = len(fields[0]) if fields else 0

    def __len__(self) -> int:
        return self._size

    def top(self, query: Sequence[str], k: int, min_score: float = 0.0) -> list[tuple[int, float]]:
        """(document index, score) of the best `k` documents scoring above `min_score`, best first."""
        total = [0.0] * self._size
        for index, weight in zip(self._indexes, self._weights, strict=True):
            for i, score in enumerate(index.scores(query)):
                total[i] += weight * score
        ranked = sorted(enumerate(total), key=lambda p: (-p[1], p[0]))
        return [(i, s) for i, s in ranked[:k] if s > min_score]
