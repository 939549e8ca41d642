"""Escalation as a request to reach a person, whole words: a table of phrases that must and must not escalate."""

from __future__ import annotations

import pytest

from bot.config import DEFAULT_ESCALATION_KEYWORDS
from bot.services.escalation import EscalationMatcher

ESCALATE = [
    "позовите оператора",
    "Позовите ОПЕРАТОРА!",
    "соедините с менеджером",
    "Соедините меня, пожалуйста, с менеджером",
    "хочу поговорить с человеком",
    "Я хочу поговорить с живым человеком, а не с ботом",
    "нужен живой человек",
    "Нужен живой человек!!!",
    "оператор",
    "Оператор!",
    "менеджера, пожалуйста",
    "Оператора позовите",
    "Переключите на оператора",
    "Свяжите меня с менеджером",
    "Как связаться с менеджером?",
    "С менеджером можно связаться?",
    "Можно оператора?",
    "Дайте менеджера",
    "Пригласите, пожалуйста, оператора в чат",
    "Подключите живого человека",
    "Нужна помощь оператора",
    "Требуется менеджер",
    "Прошу соединить с оператором",
    "Жду оператора",
    "Здравствуйте, оператор",
    "Менеджер нужен срочно",
    "Хотел бы пообщаться с менеджером. Вопрос по комиссии",
    "Спасибо. Позовите оператора",
    "Позовите кого-нибудь из менеджеров",
    "call an operator",
    "I want to talk to an operator",
    "operator please",
    "живой человек?",
]

STAY_WITH_AI = [
    "Сколько человек может участвовать в сделке?",
    "сколько человек в сделке",
    "менеджер проекта ЖК сказал, что скидка до конца месяца",
    "операторы связи дают скидку на интернет в ЖК?",
    "кооператоры",
    "Операторская работа в ЖК",
    "Сколько человек нужно для подписания?",
    "5 человек уже купили в этом доме",
    "Я менеджер, хочу узнать про комиссию",
    "Мы менеджеры агентства, нужно ли подписывать договор?",
    "Можно ли оформить сделку на другого человека?",
    "Нужен ли человек с доверенностью на сделке?",
    "Менеджер передал документы клиенту",
    "Оператор говорит, что выплата в пятницу",
    "Наш менеджер уже показал квартиру",
    "Какая комиссия у партнёра?",
    "Хочу узнать про ипотеку",
    "Позовите на просмотр в субботу",
    "Этот человек — собственник квартиры",
    "Человек без прописки может купить квартиру?",
    "Клиент — пожилой человек, нужна ли справка?",
    "Менеджером ЖК работает Иван",
    "Сколько менеджеров в агентстве?",
    "Несколько человек спрашивали про акцию",
    "менеджер объекта не отвечает на звонки",
    "У оператора ипотеки свои ставки",
    "Мой клиент хороший человек",
    "Какие документы нужны от человека, который продаёт?",
    "Где посмотреть объекты с кодами?",
    "Operators of the complex said it is sold out",
    "the operator said the flat is sold",
    "человеко-часы",
]


@pytest.fixture(scope="module")
def matcher() -> EscalationMatcher:
    """The matcher with the default ESCALATION_KEYWORDS."""
    return EscalationMatcher(DEFAULT_ESCALATION_KEYWORDS)


def test_the_table_is_large_enough() -> None:
    """At least 30 phrases each way."""
    assert len(ESCALATE) >= 30 and len(STAY_WITH_AI) >= 30


@pytest.mark.parametrize("text", ESCALATE)
def test_requests_for_a_person_escalate(matcher: EscalationMatcher, text: str) -> None:
    """A request to reach an operator, manager or person escalates."""
    assert matcher.matches(text)


@pytest.mark.parametrize("text", STAY_WITH_AI)
def test_mentions_that_are_not_requests_stay_with_the_ai(matcher: EscalationMatcher, text: str) -> None:
    """A mention of a person (a count, a third party, another word) is no request and stays with the AI."""
    assert not matcher.matches(text)


def test_keywords_are_a_setting(matcher: EscalationMatcher) -> None:
    """Other keywords (and multi-word ones) work the same way; the defaults no longer apply then."""
    custom = EscalationMatcher(["специалист", "живой сотрудник"])
    assert custom.matches("соедините со специалистом") and custom.matches("нужен живой сотрудник")
    assert not custom.matches("позовите оператора") and not custom.matches("сколько специалистов в штате")
    assert not EscalationMatcher([]).matches("позовите оператора")


def test_print_the_table(matcher: EscalationMatcher) -> None:
    """The table's results, printed for the record (`pytest -s`); every row as expected."""
    rows = [(t, True, matcher.matches(t)) for t in ESCALATE] + [(t, False, matcher.matches(t)) for t in STAY_WITH_AI]
    for text, expected, got in rows:
        print(f"{'✔' if got == expected else '✖'} {'escalates' if got else 'AI      '} | {text}")
    assert all(expected == got for _, expected, got in rows)
