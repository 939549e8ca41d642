"""Escalation: does a message ask to reach a person? Whole words, not prefixes.

A configured keyword (ESCALATION_KEYWORDS: оператор, менеджер, человек, operator) names the person; it matches
any inflection of the whole word (Russian/English Snowball stems: «оператора», «менеджером»), never a part
of another word («кооператоры», «операторская»). A mention alone is not a request: «сколько человек может
участвовать в сделке?», «менеджер проекта ЖК сказал…», «операторы связи» do not escalate. It escalates when

- a request word stands before it, with only small words between (prepositions, pronouns, «живой»,
  «пожалуйста»): «позовите оператора», «соедините меня с менеджером», «хочу поговорить с человеком»,
  «нужен живой человек», «call an operator»;
- a request word follows it the same way: «оператора позовите», «с менеджером можно связаться?» (not after
  a count or a pronoun: «сколько человек нужно», «я менеджер, хочу узнать…»);
- or the message is nothing but the person and such small words: «Оператор!», «менеджера, пожалуйста»
  (what the bot itself tells partners to type).

Sentences are judged one by one, so a request in one sentence never pairs with a mention in another.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import snowballstemmer


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Request words standing before the person, as typed (imperatives, wishes, needs; no past tenses, so «менеджер
# передал…» or «оператор говорит…» are not requests).
_REQUEST_BEFORE = _word_set(
    """
    позовите позови позвать позовете позовешь зовите позвоните позвонить перезвоните
    соедините соедини соединить соедините-ка переключите переключи переключить переведите перевести
    свяжите свяжи связать связаться свяжитесь подключите подключи подключить подключите-ка
    пригласите пригласи пригласить вызовите вызови вызвать передайте передай
    дайте дай давайте хочу хотим хотел хотела хотелось нужен нужна нужно нужны надо
    можно прошу просим жду ждем требуется помощь поговорить пообщаться переговорить побеседовать
    обратиться обращаюсь
    call connect transfer talk speak want need get give contact reach
    """
)
# Request words that may follow the person: «оператора позовите», «с менеджером можно связаться?».
_REQUEST_AFTER = _word_set(
    """
    позовите позови зовите соедините соедини подключите подключи пригласите вызовите
    нужен нужна нужно нужны надо можно требуется хочу
    """
)
# Small words allowed between a request word and the person (and around a bare mention). Folded (е for ё).
_SMALL_WORDS = _word_set(
    """
    с со к ко на до из меня мне нам нас мной бы же ка хоть кто кого то нибудь какой какого какому каким
    живой живого живому живым живая реальный реального реальным настоящий настоящего настоящим ваш вашего
    вашему вашим вашей твой этот этого этим один одного одним срочно скорее побыстрее уже ещё еще пожалуйста
    плиз какой-нибудь какого-нибудь кто-нибудь кого-нибудь кто-то кого-то здравствуйте добрый день привет алло
    please pls a an the to with me us some real live your
    """
)
# Before the person these make it a count or a self-description, not someone to reach.
_NOT_A_REQUEST_BEFORE = _word_set(
    """
    сколько скольких несколько много мало больше меньше двое трое четверо пятеро числа число количество
    я мы ты вы он она они наш наша наши
    """
)
_SENTENCES = re.compile(r"[.!?;…\n]+")
_WORDS = re.compile(r"[0-9a-zа-яё]+(?:-[a-zа-яё]+)*")


def _fold(text: str) -> str:
    return text.casefold().replace("ё", "е")


class EscalationMatcher:
    """Whether a message asks to reach a person named by one of `keywords` (see the module docstring)."""

    def __init__(self, keywords: Sequence[str]) -> None:
        self._ru = snowballstemmer.stemmer("russian")
        self._en = snowballstemmer.stemmer("english")
        self._people = [tuple(self._stem(w) for w in _WORDS.findall(_fold(k))) for k in keywords]
        self._people = [p for p in self._people if p]
        # Snowball strips endings, so a word can only share a stem that (nearly) begins it: only such words are
        # stemmed (stemming every word of every message costs far more than the rest of the check).
        self._heads = tuple({stem[: max(1, len(stem) - 1)] for person in self._people for stem in person})
        self._small = frozenset(_fold(w) for w in _SMALL_WORDS)

    def _stem(self, word: str) -> str:
        stemmer = self._en if word.isascii() else self._ru
        return str(stemmer.stemWord(word))

    def matches(self, text: str) -> bool:
        """True when the message asks for a person."""
        return any(self._sentence_asks(s) for s in _SENTENCES.split(_fold(text)))

    def _sentence_asks(self, sentence: str) -> bool:
        words = _WORDS.findall(sentence)
        if not words or not self._people:
            return False
        stems = [self._stem(w) if w.startswith(self._heads) else "" for w in words]
        spans = self._person_spans(stems)
        if not spans:
            return False
        covered: set[int] = set()
        for start, end in spans:
            covered.update(range(start, end))
            before = start - 1
            while before >= 0 and words[before] in self._small:
                before -= 1
            if before >= 0 and words[before] in _REQUEST_BEFORE:
                return True
            if start > 0 and (words[start - 1] in _NOT_A_REQUEST_BEFORE or words[start - 1].isdigit()):
                continue  # «сколько человек…», «5 человек…», «я менеджер…»: a count or a self-description
            after = end
            while after < len(words) and words[after] in self._small:
                after += 1
            if after < len(words) and words[after] in _REQUEST_AFTER and words[after + 1 : after + 2] != ["ли"]:
                return True  # («…человек, нужна ли справка?» asks about something else)
        # A bare mention: nothing but the person and small words («Оператор!», «менеджера, пожалуйста»).
        return all(i in covered or w in self._small for i, w in enumerate(words))

    def _person_spans(self, stems: list[str]) -> list[tuple[int, int]]:
        spans = []
        for i in range(len(stems)):
            for person in self._people:
                if tuple(stems[i : i + len(person)]) == person:
                    spans.append((i, i + len(person)))
        return spans
